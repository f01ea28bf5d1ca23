using k8s;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>How the control plane reaches the Kubernetes API: <c>$KUBECONFIG</c> when set, else the pod's service account.</summary>
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

    public static IKubernetes CreateClient()
    {
        var config = Environment.GetEnvironmentVariable("KUBECONFIG") is { Length: > 0 }
            ? KubernetesClientConfiguration.BuildDefaultConfig()
            : KubernetesClientConfiguration.InClusterConfig();
        return new Kubernetes(config);
    }
}
