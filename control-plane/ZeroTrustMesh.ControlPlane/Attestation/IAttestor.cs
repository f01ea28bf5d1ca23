using System.Collections.Frozen;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Attestation;

/// <summary>
/// Proves which workload identity a first-time caller has, from one kind of <see cref="IdentityProof"/>. The
/// join-token attestor works anywhere; the service-account-token attestor (<see cref="ServiceAccountTokenAttestor"/>,
/// a TokenReview against the Kubernetes API) runs where the control plane has Kubernetes access.
/// </summary>
internal interface IAttestor
{
    /// <summary>The proof kind this attestor takes (<see cref="IdentityProof.Kind"/>), also named in logs: "join_token".</summary>
    string Kind { get; }

    /// <summary>
    /// Verifies <paramref name="proof"/> (of this attestor's <see cref="Kind"/>) and returns the identity it proves.
    /// <paramref name="accept"/> runs before a single-use proof is spent: if it throws, the proof stays unused.
    /// </summary>
    /// <exception cref="IssuanceRefusedException">The proof is invalid, expired, spent, or <paramref name="accept"/> refused.</exception>
    /// <exception cref="AttestationUnavailableException">The proof could not be checked now (its verifier is unreachable): retryable.</exception>
    ValueTask<SpiffeId> AttestAsync(IdentityProof proof, Action<SpiffeId> accept, CancellationToken cancellation);
}

/// <summary>Every attestor this control plane runs, by the proof kind it takes: a signing request goes to the one its proof names.</summary>
internal sealed class Attestors(IEnumerable<IAttestor> attestors)
{
    private readonly FrozenDictionary<string, IAttestor> _byKind = attestors.ToFrozenDictionary(a => a.Kind, StringComparer.Ordinal);

    /// <inheritdoc cref="IAttestor.AttestAsync"/>
    public ValueTask<SpiffeId> AttestAsync(IdentityProof? proof, Action<SpiffeId> accept, CancellationToken cancellation)
    {
        if (proof is null)
        {
            throw new IssuanceRefusedException(RefusalKind.Unauthenticated, $"no proof of identity: pass a {Accepted}");
        }
        if (!_byKind.TryGetValue(proof.Kind, out var attestor))
        {
            throw new IssuanceRefusedException(RefusalKind.Unauthenticated, $"this control plane does not accept a {Readable(proof.Kind)} as proof of identity; pass a {Accepted}");
        }
        return attestor.AttestAsync(proof, accept, cancellation);
    }

    private string Accepted => string.Join(" or a ", _byKind.Keys.Order(StringComparer.Ordinal).Select(Readable));

    private static string Readable(string kind) => kind.Replace('_', ' ');
}

/// <summary>
/// A proof that could not be checked now, because what checks it (the Kubernetes API) did not answer: not a refusal,
/// nothing is issued, and the caller may retry (gRPC <c>UNAVAILABLE</c>).
/// </summary>
internal sealed class AttestationUnavailableException(string reason, Exception? inner = null) : Exception(reason, inner);
