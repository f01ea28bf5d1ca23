using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Attestation;

/// <summary>
/// Proves which workload identity a first-time caller has. The join-token attestor works anywhere; the
/// Kubernetes service-account-token attestor (TokenReview) comes with the Kubernetes milestone.
/// </summary>
internal interface IAttestor
{
    /// <summary>The proof kind this attestor takes, for logs: "join_token".</summary>
    string Kind { get; }

    /// <summary>
    /// Verifies <paramref name="proof"/> and returns the identity it proves. <paramref name="accept"/> runs
    /// before a single-use proof is spent: if it throws, the proof stays unused.
    /// </summary>
    /// <exception cref="Ca.IssuanceRefusedException">The proof is invalid, expired, spent, or <paramref name="accept"/> refused.</exception>
    SpiffeId Attest(string proof, Action<SpiffeId> accept);
}
