using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Attestation;

/// <summary>
/// Single-use, expiring join tokens, each bound to exactly one workload identity: files in the data directory
/// standalone (<see cref="FileJoinTokenStore"/>), a Kubernetes object later. Only a hash of each token is kept.
/// </summary>
internal interface IJoinTokenStore
{
    /// <summary>Mints a token for <paramref name="id"/>; it is stored before it is returned.</summary>
    (string Token, DateTimeOffset ExpiresAt) Create(SpiffeId id, TimeSpan ttl);

    /// <summary>
    /// Spends <paramref name="token"/> and returns the identity it was minted for. <paramref name="accept"/> runs
    /// first: if it throws, the token stays unused.
    /// </summary>
    /// <exception cref="Ca.IssuanceRefusedException">Unknown, already used, expired, or refused by <paramref name="accept"/>.</exception>
    SpiffeId Redeem(string token, Action<SpiffeId> accept);
}

/// <summary>Attests with a join token (<see cref="JoinTokenProof"/>): the identity is the one the token was minted for.</summary>
internal sealed class JoinTokenAttestor(IJoinTokenStore tokens) : IAttestor
{
    public string Kind => JoinTokenProof.KindName;

    public ValueTask<SpiffeId> AttestAsync(IdentityProof proof, Action<SpiffeId> accept, CancellationToken cancellation) =>
        ValueTask.FromResult(tokens.Redeem(((JoinTokenProof)proof).Token, accept));
}
