using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>A signed SVID and what goes back to the workload with it.</summary>
internal sealed record IssuedSvid(SpiffeId Id, SignedCertificate Leaf, IReadOnlyList<X509Certificate2> ChainAfterLeaf, TrustBundle Bundle);

/// <summary>
/// Issues SVIDs. The identity always comes from the proof (first issuance, through the attestor of its kind) or from
/// the caller's verified current SVID (renewal), never from the CSR; a CSR that names any other identity is refused.
/// Every issuance and every refusal is logged as one line.
/// </summary>
internal sealed class SvidIssuer(CertificateAuthority ca, Attestors attestors, CallerVerifier callers, ControlPlaneOptions options, ControlPlaneMetrics metrics, ILogger<SvidIssuer> logger)
{
    /// <summary>Raised after a renewal with the serial of the certificate the caller presented (normalized) and the new one.</summary>
    public event Action<string, SignedCertificate>? Renewed;

    /// <summary>
    /// First issuance: CSR + proof of identity; the CSR is checked before the proof is looked at. A proof that cannot be
    /// checked now (<see cref="AttestationUnavailableException"/>) is logged and passed on: the caller may retry.
    /// </summary>
    public async Task<IssuedSvid> SignAsync(ReadOnlyMemory<byte> csrDer, IdentityProof? proof, string peer, CancellationToken cancellation)
    {
        try
        {
            var csr = CsrValidator.Validate(csrDer.Span);
            // A single-use proof is spent only if the CSR fits the identity it proves.
            var id = await attestors.AttestAsync(proof, proven => RequireSameIdentity(csr, proven), cancellation);
            return Issue(id, csr, proof!.Kind, peer);
        }
        catch (IssuanceRefusedException e)
        {
            ControlPlaneLog.SvidRefused(logger, "sign", e.Kind, e.Message, peer);
            metrics.SvidRefused("sign", e.Kind);
            throw;
        }
        catch (AttestationUnavailableException e)
        {
            ControlPlaneLog.SvidUnavailable(logger, "sign", e.Message, peer);
            throw;
        }
    }

    /// <summary>Renewal: the caller proves its identity with its current, unexpired, unrevoked SVID.</summary>
    public IssuedSvid Renew(ReadOnlySpan<byte> csrDer, X509Certificate2? callerCertificate, string peer)
    {
        try
        {
            var caller = callers.Check(callerCertificate, id => CallerVerifier.WorkloadsOnly(id) is { } refusal ? $"{refusal} and cannot be renewed here" : null);
            switch (caller.Failure)
            {
                case CallerFailure.Revoked:
                    // A revoked certificate proves nothing: the workload needs a new join token (a new first issuance).
                    throw new IssuanceRefusedException(RefusalKind.PermissionDenied, $"renewal refused: {caller.Reason}; a revoked workload needs a new join token");
                case CallerFailure.Unauthenticated:
                    throw new IssuanceRefusedException(RefusalKind.Unauthenticated, $"renewal needs the caller's current SVID over mTLS: {caller.Reason}");
                case CallerFailure.NotAllowed:
                    throw new IssuanceRefusedException(RefusalKind.PermissionDenied, caller.Reason!);
            }
            var csr = CsrValidator.Validate(csrDer);
            RequireSameIdentity(csr, caller.Id);
            var issued = Issue(caller.Id, csr, "renewal", peer);
            Renewed?.Invoke(RevocationList.NormalizedSerial(callerCertificate!), issued.Leaf);
            return issued;
        }
        catch (IssuanceRefusedException e)
        {
            ControlPlaneLog.SvidRefused(logger, "renew", e.Kind, e.Message, peer);
            metrics.SvidRefused("renew", e.Kind);
            throw;
        }
    }

    private static void RequireSameIdentity(ValidatedCsr csr, SpiffeId proven)
    {
        if (csr.RequestedId is { } requested && requested != proven)
        {
            throw new IssuanceRefusedException(RefusalKind.PermissionDenied, $"the CSR asks for '{requested}' but the caller proved '{proven}'");
        }
    }

    private IssuedSvid Issue(SpiffeId id, ValidatedCsr csr, string via, string peer)
    {
        var leaf = ca.SignSvid(id, csr.PublicKey, options.SvidTtl);
        ControlPlaneLog.SvidIssued(logger, id.Value, leaf.Serial, leaf.NotAfter, via, csr.KeyDescription, peer);
        metrics.SvidIssued(via);
        return new IssuedSvid(id, leaf, [.. ca.ChainAfterLeaf], ca.Bundle);
    }
}
