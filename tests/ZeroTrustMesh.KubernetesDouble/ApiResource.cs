namespace ZeroTrustMesh.KubernetesDouble;

/// <summary>A kind the double serves: where (group, version, plural) and whether its objects live in a namespace.</summary>
public sealed record ApiResource(string Group, string Version, string Plural, string Kind, bool Namespaced)
{
    public string ApiVersion => Group.Length == 0 ? Version : $"{Group}/{Version}";

    /// <summary>Whether DELETE answers with the deleted object (pods do), rather than a <c>Status</c> of Success.</summary>
    public bool ReturnsDeletedObject { get; init; }

    /// <summary>
    /// Whether the kind has the <c>status</c> subresource (as a CRD with <c>subresources: {status: {}}</c>): writes to the
    /// object keep its status, and bump <c>metadata.generation</c> only when the spec changes; <c>/status</c> writes only the status.
    /// </summary>
    public bool StatusSubresource { get; init; }

    /// <summary>What the double serves from the start; <see cref="KubernetesApiDouble.Register"/> adds more (custom resources).</summary>
    public static IReadOnlyList<ApiResource> Builtin { get; } =
    [
        new("", "v1", "namespaces", "Namespace", false),
        new("", "v1", "configmaps", "ConfigMap", true),
        new("", "v1", "secrets", "Secret", true),
        new("", "v1", "pods", "Pod", true) { ReturnsDeletedObject = true },
        new("", "v1", "services", "Service", true) { ReturnsDeletedObject = true },
        new("", "v1", "serviceaccounts", "ServiceAccount", true),
        new("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true),
        new("apps", "v1", "deployments", "Deployment", true),
        new("coordination.k8s.io", "v1", "leases", "Lease", true),
        new("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", false),
        new("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", false),
        new("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false),
        new("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", false), // create only: answered, never stored
    ];
}

/// <summary>One request the double received, for tests that check what a client did.</summary>
public sealed record RecordedRequest(string Method, string Path, string? ContentType, int Status)
{
    /// <summary>The query string (<c>?watch=true&amp;resourceVersion=…</c>), recorded for watches.</summary>
    public string Query { get; init; } = "";
}
