using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>The AnomalyPolicies of the config in force (files or custom resources, validated like every kind), looked up per workload and cached per version.</summary>
internal sealed class ConfigAnomalyPolicies(ConfigStore config) : IAnomalyPolicies
{
    private volatile Cache? _cache;

    public AnomalyPolicy? For(WorkloadRef workload)
    {
        var state = config.Current;
        var cache = _cache;
        if (cache is null || !ReferenceEquals(cache.State.Resources, state.Resources))
        {
            _cache = cache = new Cache(state);
        }
        return cache.Policies.GetOrAdd(workload, static (w, s) => s.For(w).Select(r => r.Document.Resource).OfType<AnomalyPolicy>().FirstOrDefault(), state);
    }

    private sealed record Cache(ConfigState State)
    {
        public System.Collections.Concurrent.ConcurrentDictionary<WorkloadRef, AnomalyPolicy?> Policies { get; } = new();
    }
}
