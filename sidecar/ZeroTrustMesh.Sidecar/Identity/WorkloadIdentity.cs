using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar.Identity;

/// <summary>
/// The sidecar's current X.509-SVID with its private key (generated here; it never leaves the process),
/// and the intermediates to present after it. Immutable: a renewal produces a new instance that replaces this one
/// atomically. The trust bundle is not part of it: it changes on its own (<see cref="IdentityState.Bundle"/>).
/// </summary>
internal sealed class WorkloadIdentity(SpiffeId id, X509Certificate2 certificate, IReadOnlyList<X509Certificate2> intermediates)
{
    public SpiffeId Id { get; } = id;

    public X509Certificate2 Certificate { get; } = certificate;

    public IReadOnlyList<X509Certificate2> Intermediates { get; } = intermediates;

    public DateTimeOffset NotBefore { get; } = certificate.NotBefore.ToUniversalTime();

    public DateTimeOffset NotAfter { get; } = certificate.NotAfter.ToUniversalTime();

    public string Serial { get; } = certificate.SerialNumber.ToLowerInvariant();

    /// <summary>
    /// The certificate as every TLS handshake presents it, built once per identity: a renewal swaps the
    /// whole identity, so the next handshake picks up the new certificate and established connections keep theirs.
    /// </summary>
    public SslStreamCertificateContext TlsContext => _tlsContext ??= SslStreamCertificateContext.Create(Certificate, [.. Intermediates], offline: true);

    private SslStreamCertificateContext? _tlsContext;

    public bool IsValidAt(DateTimeOffset now) => now >= NotBefore && now < NotAfter;
}
