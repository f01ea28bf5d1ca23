namespace ZeroTrustMesh.ControlPlane.Attestation;

/// <summary>
/// What a caller shows to prove which workload it is, for a first issuance; the signing request carries one kind
/// (<c>oneof proof</c>), and <see cref="Attestors"/> dispatches on it. Proofs are secrets: never printed.
/// </summary>
internal abstract record IdentityProof(string Kind)
{
    public sealed override string ToString() => $"{Kind} proof";
}

/// <summary>A single-use join token an operator minted for one namespace/service account (outside Kubernetes).</summary>
internal sealed record JoinTokenProof(string Token) : IdentityProof(JoinTokenProof.KindName)
{
    public const string KindName = "join_token";
}

/// <summary>
/// A Kubernetes projected service-account token (audience-bound, bound to its pod), checked with a TokenReview by
/// <see cref="ServiceAccountTokenAttestor"/>. Reusable: a restarted workload re-attests with it. A control plane without
/// Kubernetes access refuses it with a message saying so.
/// </summary>
internal sealed record ServiceAccountTokenProof(string Token) : IdentityProof(ServiceAccountTokenProof.KindName)
{
    public const string KindName = "service_account_token";
}
