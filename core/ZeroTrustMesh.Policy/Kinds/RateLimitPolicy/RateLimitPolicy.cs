using System.Collections.Immutable;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// <c>kind: RateLimitPolicy</c>: token buckets keyed by caller identity. <see cref="RateLimitPolicySpec.PerCaller"/>
/// applies to every caller for the whole workload; each route adds its own bucket per caller; an override replaces the
/// per-caller limit for one principal.
/// </summary>
public sealed record RateLimitPolicy(ResourceMetadata Metadata, RateLimitPolicySpec Spec) : PolicyResource(Metadata)
{
    public const string KindName = "RateLimitPolicy";

    public override string Kind => KindName;

    public override WorkloadSelector? Selector => Spec.Selector;
}

public sealed record RateLimitPolicySpec(
    WorkloadSelector? Selector,
    TokenBucket? PerCaller,
    ImmutableArray<RouteRateLimit> Routes,
    ImmutableArray<PrincipalRateLimit> Overrides);

/// <summary><see cref="RequestsPerUnit"/> tokens refill per <see cref="Unit"/>; up to <see cref="Burst"/> may be spent at once.</summary>
public sealed record TokenBucket(int RequestsPerUnit, RateUnit Unit, int Burst);

public enum RateUnit
{
    Second,
    Minute,
    Hour,
}

/// <summary>A per-caller bucket for requests whose path matches <see cref="Path"/> (same patterns as rules) and method.</summary>
public sealed record RouteRateLimit(string Path, ImmutableArray<string> Methods, TokenBucket Limit);

public sealed record PrincipalRateLimit(string Principal, TokenBucket Limit);
