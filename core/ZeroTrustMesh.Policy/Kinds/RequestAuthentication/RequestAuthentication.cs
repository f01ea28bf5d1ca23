using System.Collections.Immutable;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary><c>kind: RequestAuthentication</c>: which JWT issuers a workload accepts and where their keys are.</summary>
public sealed record RequestAuthentication(ResourceMetadata Metadata, RequestAuthenticationSpec Spec) : PolicyResource(Metadata)
{
    public const string KindName = "RequestAuthentication";

    public override string Kind => KindName;

    public override WorkloadSelector? Selector => Spec.Selector;
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
