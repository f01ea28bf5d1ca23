using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>A signed SVID and what goes back to the workload with it.</summary>
internal sealed record IssuedSvid(SpiffeId Id, SignedCertificate Leaf, IReadOnlyList<X509Certificate2> ChainAfterLeaf, TrustBundle Bundle);

/// <summary>
/// Issues SVIDs. The identity always comes from the proof (first issuance) or from the caller's verified
/// current SVID (renewal), never from the CSR; a CSR that names any other identity is refused.
/// Every issuance and every refusal is logged as one line.
/// </summary>
internal sealed class SvidIssuer(CertificateAuthority ca, IAttestor attestor, ControlPlaneOptions options, ILogger<SvidIssuer> logger, CurrentRevocations? revocations = null)
{
    /// <summary>First issuance: CSR + single-use proof.</summary>
    public IssuedSvid Sign(ReadOnlySpan<byte> csrDer, string proof, string peer)
    {
        try
        {
            var csr = CsrValidator.Validate(csrDer);
            if (string.IsNullOrEmpty(proof))
            {
                throw new IssuanceRefusedException(RefusalKind.Unauthenticated, "no proof of identity: pass a join token");
            }
            // The token is spent only if the CSR fits the identity it proves.
            var id = attestor.Attest(proof, proven => RequireSameIdentity(csr, proven));
            return Issue(id, csr, attestor.Kind, peer);
        }
        catch (IssuanceRefusedException e)
        {
            ControlPlaneLog.SvidRefused(logger, "sign", e.Kind, e.Message, peer);
            throw;
        }
    }

    /// <summary>Renewal: the caller proves its identity with its current, unexpired, unrevoked SVID.</summary>
    public IssuedSvid Renew(ReadOnlySpan<byte> csrDer, X509Certificate2? callerCertificate, string peer)
    {
        try
        {
            var verification = SvidVerifier.Verify(callerCertificate, ca.ChainAfterLeaf, ca.Bundle, ca.Time.GetUtcNow(), revocations?.Invoke(), SvidPurpose.Client);
            if (verification.Failure == SvidFailure.Revoked)
            {
                // A revoked certificate proves nothing: the workload needs a new join token (a new first issuance).
                throw new IssuanceRefusedException(RefusalKind.PermissionDenied, $"renewal refused: {verification.Reason}; a revoked workload needs a new join token");
            }
            if (!verification.IsValid)
            {
                throw new IssuanceRefusedException(RefusalKind.Unauthenticated, $"renewal needs the caller's current SVID over mTLS: {verification.Reason}");
            }
            if (!verification.Id.TryGetWorkload(out _, out _))
            {
                throw new IssuanceRefusedException(RefusalKind.PermissionDenied, $"'{verification.Id}' is not a workload identity and cannot be renewed here");
            }
            var csr = CsrValidator.Validate(csrDer);
            RequireSameIdentity(csr, verification.Id);
            return Issue(verification.Id, csr, "renewal", peer);
        }
        catch (IssuanceRefusedException e)
        {
            ControlPlaneLog.SvidRefused(logger, "renew", e.Kind, e.Message, peer);
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
        return new IssuedSvid(id, leaf, [.. ca.ChainAfterLeaf], ca.Bundle);
    }
}
