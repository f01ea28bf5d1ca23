using k8s;

namespace ZeroTrustMesh.ControlPlane.Kubernetes;

/// <summary>
/// How the control plane reaches the Kubernetes API (<c>--kubernetes</c>, or <c>--webhook-configuration</c>):
/// <c>$KUBECONFIG</c> when set, else the pod's service account. One client per process, shared by every part that
/// calls the API (attestation, the caBundle and ztm-ca-root publishers).
/// </summary>
internal static class KubernetesAccess
{
    /// <summary>Why there is no way to the API (for the start-up line), or null when there is one.</summary>
    public static string? Describe()
    {
        if (Environment.GetEnvironmentVariable("KUBECONFIG") is { Length: > 0 } kubeconfig)
        {
            var missing = kubeconfig.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault(p => !File.Exists(p));
            return missing is null ? null : $"$KUBECONFIG names {missing}, which does not exist";
        }
        return KubernetesClientConfiguration.IsInCluster()
            ? null
            : "not running in a pod with a service account, and $KUBECONFIG is not set";
    }

    /// <summary>Where the API is, for the start-up line: the server's address and how the client was configured.</summary>
    public static string Location(IKubernetes client) =>
        $"{client.BaseUri.GetLeftPart(UriPartial.Authority)} ({(Environment.GetEnvironmentVariable("KUBECONFIG") is { Length: > 0 } ? "$KUBECONFIG" : "in-cluster service account")})";

    public static IKubernetes CreateClient() => new k8s.Kubernetes(Configuration());

    /// <summary>
    /// The namespace the client is configured for, when <c>--namespace</c> and <c>$POD_NAMESPACE</c> say none: the
    /// kubeconfig context's, or the pod's (its service account's namespace file); else <c>default</c>.
    /// </summary>
    public static string DefaultNamespace() => Configuration().Namespace is { Length: > 0 } ns ? ns : "default";

    private static KubernetesClientConfiguration Configuration() =>
        Environment.GetEnvironmentVariable("KUBECONFIG") is { Length: > 0 }
            ? KubernetesClientConfiguration.BuildDefaultConfig()
            : KubernetesClientConfiguration.InClusterConfig();
}
