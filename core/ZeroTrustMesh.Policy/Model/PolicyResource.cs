using System.Collections.Immutable;

namespace ZeroTrustMesh.Policy.Model;

/// <summary>
/// A Kubernetes-style resource (<c>apiVersion</c>, <c>kind</c>, <c>metadata</c>, <c>spec</c>) so that the same
/// YAML files become CRDs in a cluster. The four kinds derive from this; <see cref="Kind"/> is fixed per type.
/// </summary>
public abstract record PolicyResource(ResourceMetadata Metadata)
{
    public const string ApiVersion = "security.ztm.dev/v1";

    public abstract string Kind { get; }

    /// <summary>The identity of a resource within a set: two resources with the same key are a conflict.</summary>
    public ResourceKey Key => new(Kind, Metadata.Namespace, Metadata.Name);
}

/// <summary>
/// <c>metadata</c>. A missing namespace means <see cref="DefaultNamespace"/>, as <c>kubectl apply</c> does without
/// <c>-n</c>. Labels and annotations are carried but never interpreted.
/// </summary>
public sealed record ResourceMetadata(string Name, string Namespace)
{
    public const string DefaultNamespace = "default";

    public ImmutableDictionary<string, string> Labels { get; init; } = ImmutableDictionary<string, string>.Empty;

    public ImmutableDictionary<string, string> Annotations { get; init; } = ImmutableDictionary<string, string>.Empty;
}

public readonly record struct ResourceKey(string Kind, string Namespace, string Name)
{
    public override string ToString() => $"{Kind} '{Namespace}/{Name}'";
}

/// <summary>
/// <c>spec.selector</c>: which workloads a resource applies to, by service name within the resource's namespace.
/// A resource without a selector applies to every workload of its namespace. Labels are not used on purpose: the mesh
/// names workloads by service (the SPIFFE service account), and one key is easy to read and to index.
/// </summary>
public sealed record WorkloadSelector(string Service);

/// <summary>A workload a snapshot is compiled for: its namespace and service name.</summary>
public readonly record struct WorkloadRef(string Namespace, string Service)
{
    public override string ToString() => $"{Namespace}/{Service}";
}
