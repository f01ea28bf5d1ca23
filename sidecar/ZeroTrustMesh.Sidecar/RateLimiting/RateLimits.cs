using System.Collections.Frozen;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Sidecar.RateLimiting;

/// <summary>A rate-limit outcome as a value: allowed, or the policy that refused and when to retry.</summary>
internal readonly record struct RateLimitDecision(bool Allowed, string? Policy, TimeSpan RetryAfter)
{
    public static RateLimitDecision Allow => new(true, null, TimeSpan.Zero);

    /// <summary><c>Retry-After</c> in whole seconds, at least 1.</summary>
    public int RetryAfterSeconds => Math.Max(1, (int)Math.Ceiling(RetryAfter.TotalSeconds));
}

/// <summary>
/// The RateLimitPolicies of one snapshot that select this workload. A request is charged, per caller identity, one
/// token from each policy's per-caller bucket (or the caller's override) and from the bucket of every route it
/// matches; if any bucket is empty nothing is charged and the request is refused with the time until a token is back.
/// </summary>
internal sealed class RateLimits
{
    public static readonly RateLimits None = new([], null!);

    private readonly CompiledPolicy[] _policies;
    private readonly TokenBuckets _buckets;

    private RateLimits(CompiledPolicy[] policies, TokenBuckets buckets)
    {
        _policies = policies;
        _buckets = buckets;
    }

    public int PolicyCount => _policies.Length;

    public static RateLimits Compile(WorkloadRef workload, IEnumerable<RateLimitPolicy> resources, TokenBuckets buckets)
    {
        var policies = resources
            .Where(r => r.AppliesTo(workload))
            .OrderBy(r => r.Metadata.Name, StringComparer.Ordinal)
            .Select(r => new CompiledPolicy(r))
            .ToArray();
        return policies.Length == 0 ? None : new RateLimits(policies, buckets);
    }

    /// <param name="caller">The caller's verified identity (SPIFFE ID).</param>
    /// <param name="path">The normalized path, as the authorizer saw it.</param>
    public RateLimitDecision TryAcquire(string caller, string method, ReadOnlySpan<char> path)
    {
        if (_policies.Length == 0)
        {
            return RateLimitDecision.Allow;
        }
        var query = path.IndexOfAny('?', '#');
        if (query >= 0)
        {
            path = path[..query];
        }
        // Scopes charged so far, to refund them if a later bucket refuses.
        List<string>? charged = null;
        foreach (var policy in _policies)
        {
            var perCaller = policy.Overrides.TryGetValue(caller, out var own) ? own : policy.PerCaller;
            if (perCaller is not null && !Take(policy.PerCallerScope, perCaller, policy.Name, out var refused))
            {
                return refused;
            }
            for (var i = 0; i < policy.Routes.Length; i++)
            {
                var route = policy.Routes[i];
                if (route.Matches(method, path) && !Take(route.Scope, route.Limit, policy.Name, out refused))
                {
                    return refused;
                }
            }
        }
        return RateLimitDecision.Allow;

        bool Take(string scope, TokenBucket limit, string policyName, out RateLimitDecision refused)
        {
            if (_buckets.TryTake(scope, caller, limit, out var retryAfter))
            {
                (charged ??= []).Add(scope);
                refused = default;
                return true;
            }
            foreach (var earlier in charged ?? [])
            {
                _buckets.Refund(earlier, caller);
            }
            refused = new RateLimitDecision(false, policyName, retryAfter);
            return false;
        }
    }

    private sealed class CompiledPolicy
    {
        public CompiledPolicy(RateLimitPolicy resource)
        {
            Name = $"{resource.Metadata.Namespace}/{resource.Metadata.Name}";
            PerCaller = resource.Spec.PerCaller;
            PerCallerScope = Name;
            var overrides = resource.Spec.Overrides.IsDefault ? [] : resource.Spec.Overrides;
            Overrides = overrides.ToFrozenDictionary(o => o.Principal, o => o.Limit, StringComparer.Ordinal);
            var routes = resource.Spec.Routes.IsDefault ? [] : resource.Spec.Routes;
            Routes = [.. routes.Select((r, i) => new CompiledRoute($"{Name}#routes[{i}]", r))];
        }

        public string Name { get; }

        public TokenBucket? PerCaller { get; }

        public string PerCallerScope { get; }

        public FrozenDictionary<string, TokenBucket> Overrides { get; }

        public CompiledRoute[] Routes { get; }
    }

    private sealed class CompiledRoute(string scope, RouteRateLimit route)
    {
        private readonly PathPatterns _path = new([route.Path]);
        private readonly FrozenSet<string> _methods = (route.Methods.IsDefault ? [] : route.Methods).ToFrozenSet(StringComparer.Ordinal);

        public string Scope => scope;

        public TokenBucket Limit => route.Limit;

        public bool Matches(string method, ReadOnlySpan<char> path) =>
            (_methods.Count == 0 || _methods.Contains("*") || _methods.Contains(method)) && _path.Matches(path);
    }
}
