using ZeroTrustMesh.Policy.L4;
using System.Collections.Frozen;
using System.Collections.Immutable;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.ControlPlane.Config;

/// <summary>One stored resource and its YAML document, as sidecars receive it.</summary>
internal sealed record StoredResource(PolicyDocument Document, string Yaml)
{
    public ResourceKey Key => Document.Resource.Key;

    public string KeyText => $"{Key.Kind}/{Key.Namespace}/{Key.Name}";

    /// <summary>
    /// A digest of what the resource names outside its own text (an ApiSpec's OpenAPI file), or null: an edit there is
    /// a change of the resource although its YAML is the same.
    /// </summary>
    public string? Referenced { get; init; }

    /// <summary>Whether <paramref name="other"/> carries the same: its YAML and what it names.</summary>
    public bool SameAs(StoredResource other) => Yaml == other.Yaml && Referenced == other.Referenced;
}

/// <summary>What a group of workloads receives: the resources of one namespace, and of one service when <see cref="Service"/> is set.</summary>
internal readonly record struct ConfigKey(string Namespace, string? Service);

/// <summary>
/// The config at one version: the policy resources, the revocations in force, the trust bundle (which changes only
/// with a CA rotation) and the callers anomaly response restricts now; immutable, replaced as a whole.
/// </summary>
internal sealed record ConfigState(string Version, ImmutableDictionary<ResourceKey, StoredResource> Resources, RevocationList Revocations, TrustBundle Bundle)
{
    /// <summary>Temporary restrictions of single callers (AnomalyPolicy in Enforce), in a stable order.</summary>
    public ImmutableArray<CallerRestriction> Restrictions { get; init; } = [];

    /// <summary>The restrictions <paramref name="workload"/>'s sidecars enforce.</summary>
    public IEnumerable<CallerRestriction> RestrictionsFor(WorkloadRef workload) => Restrictions.Where(r => r.Workload == workload);

    /// <summary>The resources that apply to one workload (its namespace, selected by service or by no selector).</summary>
    public IReadOnlyList<StoredResource> For(WorkloadRef workload) => For(workload.Namespace, workload.Service);

    /// <summary>
    /// The workloads that receive the same resources as <paramref name="workload"/> share one key: the workload itself
    /// when a resource selects its service by name, otherwise its namespace alone (it gets the namespace-wide ones).
    /// So a push builds one snapshot per key, not one per workload.
    /// </summary>
    public ConfigKey KeyFor(WorkloadRef workload) =>
        SelectedServices.Contains(workload) ? new ConfigKey(workload.Namespace, workload.Service) : new ConfigKey(workload.Namespace, null);

    /// <summary>
    /// Which HTTP ports of the workloads of (<paramref name="namespace"/>, <paramref name="service"/>) are in L4 mode:
    /// the resources they receive and their caller restrictions, decided by <see cref="L4Eligibility"/>.
    /// </summary>
    /// <param name="service">Null: the namespace-wide resources only (workloads no resource selects by name).</param>
    public PortModes PortModesFor(string @namespace, string? service, bool l4Mode) =>
        L4Eligibility.Of(l4Mode, For(@namespace, service).Select(r => r.Document.Resource),
            service is not null && RestrictionsFor(new WorkloadRef(@namespace, service)).Any());

    /// <param name="service">Null: only the namespace-wide (selector-less) resources.</param>
    public IReadOnlyList<StoredResource> For(string @namespace, string? service) =>
        [.. Resources.Values.Where(r => r.Document.Resource.AppliesTo(@namespace, service)).OrderBy(r => r.KeyText, StringComparer.Ordinal)];

    /// <summary>Every (namespace, service) some resource selects by name; computed once per state.</summary>
    private FrozenSet<WorkloadRef> SelectedServices => _selected ??= Resources.Values
        .Select(r => (r.Document.Resource.Metadata.Namespace, r.Document.Resource.Selector))
        .Where(x => x.Selector is not null)
        .Select(x => new WorkloadRef(x.Namespace, x.Selector!.Service))
        .Concat(Restrictions.Select(r => r.Workload)) // a restricted workload gets its own snapshot
        .ToFrozenSet();

    private FrozenSet<WorkloadRef>? _selected;

    /// <summary>A copy (<c>with</c>) never inherits the index of another resource set.</summary>
    private ConfigState(ConfigState original)
    {
        Version = original.Version;
        Resources = original.Resources;
        Revocations = original.Revocations;
        Bundle = original.Bundle;
        Restrictions = original.Restrictions;
    }
}
