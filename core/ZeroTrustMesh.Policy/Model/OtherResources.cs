using System.Collections.Immutable;

namespace ZeroTrustMesh.Policy.Model;

/// <summary><c>kind: RequestAuthentication</c>: which JWT issuers a workload accepts and where their keys are.</summary>
public sealed record RequestAuthentication(ResourceMetadata Metadata, RequestAuthenticationSpec Spec) : PolicyResource(Metadata)
{
    public const string KindName = "RequestAuthentication";

    public override string Kind => KindName;
}

public sealed record RequestAuthenticationSpec(WorkloadSelector? Selector, ImmutableArray<JwtRule> JwtRules);

/// <summary>
/// One accepted issuer. Exactly one of <see cref="JwksUri"/> (https, fetched and cached by whoever validates tokens)
/// or <see cref="Jwks"/> (an inline JSON Web Key Set) is given. An empty <see cref="Audiences"/> accepts any audience.
/// </summary>
public sealed record JwtRule(string Issuer, ImmutableArray<string> Audiences, string? JwksUri, string? Jwks)
{
    /// <summary>
    /// <c>forwardOriginalToken</c> (Istio's field): keep the validated token's <c>Authorization</c> header on the request
    /// the app receives. False by default: the token proved who the end user is to the mesh, and the app gets no
    /// credential it could replay elsewhere.
    /// </summary>
    public bool ForwardOriginalToken { get; init; }
}

/// <summary>
/// <c>kind: PeerAuthentication</c>: whether a workload accepts only mTLS (STRICT, the default) or also plaintext
/// (PERMISSIVE), for the whole workload or per application port (<c>portLevelMtls</c>, which needs a selector, as in Istio).
/// </summary>
public sealed record PeerAuthentication(ResourceMetadata Metadata, PeerAuthenticationSpec Spec) : PolicyResource(Metadata)
{
    public const string KindName = "PeerAuthentication";

    public override string Kind => KindName;
}

public sealed record PeerAuthenticationSpec(WorkloadSelector? Selector, MtlsMode Mode, ImmutableArray<PortMtls> PortLevelMtls);

public enum MtlsMode
{
    Strict,
    Permissive,
}

/// <summary>The mode for one of the workload's application ports (the app's port, as in <c>--app-port</c>).</summary>
public sealed record PortMtls(int Port, MtlsMode Mode);

/// <summary>
/// <c>kind: RateLimitPolicy</c>: token buckets keyed by caller identity. <see cref="RateLimitPolicySpec.PerCaller"/>
/// applies to every caller for the whole workload; each route adds its own bucket per caller; an override replaces the
/// per-caller limit for one principal.
/// </summary>
public sealed record RateLimitPolicy(ResourceMetadata Metadata, RateLimitPolicySpec Spec) : PolicyResource(Metadata)
{
    public const string KindName = "RateLimitPolicy";

    public override string Kind => KindName;
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
