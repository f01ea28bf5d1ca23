using System.Collections.Immutable;

namespace ZeroTrustMesh.Policy.Model;

/// <summary>
/// A Kubernetes-style resource (<c>apiVersion</c>, <c>kind</c>, <c>metadata</c>, <c>spec</c>) so that the same
/// YAML files become CRDs in a cluster. Each kind derives from this and is described by its
/// <see cref="Kinds.PolicyKind"/> (reader, validator, wire form); <see cref="Kind"/> is fixed per type.
/// </summary>
public abstract record PolicyResource(ResourceMetadata Metadata)
{
    public const string ApiVersion = "security.ztm.dev/v1";

    public abstract string Kind { get; }

    /// <summary>Which workloads of <see cref="ResourceMetadata.Namespace"/> the resource applies to; null: all of them.</summary>
    public abstract WorkloadSelector? Selector { get; }

    /// <summary>The identity of a resource within a set: two resources with the same key are a conflict.</summary>
    public ResourceKey Key => new(Kind, Metadata.Namespace, Metadata.Name);

    /// <summary>
    /// Whether this resource applies to <paramref name="workload"/>: same namespace, and no selector or one naming the
    /// workload's service. The one place selection is decided, for every kind, on both sides of the mesh.
    /// </summary>
    public bool AppliesTo(WorkloadRef workload) => AppliesTo(workload.Namespace, workload.Service);

    /// <param name="service">Null: applies only if the resource selects no service (namespace-wide).</param>
    public bool AppliesTo(string @namespace, string? service) =>
        Metadata.Namespace == @namespace && (Selector is null || (service is not null && Selector.Service == service));
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
