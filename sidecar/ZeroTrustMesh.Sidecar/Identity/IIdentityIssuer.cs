using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar.Identity;

/// <summary>What the control plane sent back for a CSR: DER certificates (leaf first) and the trust bundle.</summary>
internal sealed record IssuedCertificate(string SpiffeId, IReadOnlyList<byte[]> Chain, TrustBundle Bundle);

/// <summary>The control plane's signing service as the rotator sees it; a seam so rotation can be tested with a fake clock.</summary>
internal interface IIdentityIssuer
{
    /// <summary>First issuance, proven with <paramref name="proof"/> (a join token or a service-account token).</summary>
    /// <exception cref="IdentityRefusedException">The control plane refused; retrying the same request cannot help.</exception>
    Task<IssuedCertificate> SignAsync(byte[] csr, IdentityProof proof, CancellationToken cancellation);

    /// <summary>Renewal, proven with <paramref name="current"/> over mTLS.</summary>
    /// <exception cref="IdentityRefusedException">The control plane refused.</exception>
    Task<IssuedCertificate> RenewAsync(byte[] csr, WorkloadIdentity current, CancellationToken cancellation);
}

internal sealed class IdentityRefusedException(string message, Exception? inner = null) : Exception(message, inner);
