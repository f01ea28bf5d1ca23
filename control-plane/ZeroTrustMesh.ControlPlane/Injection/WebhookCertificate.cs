using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>
/// The webhook's serving certificate: issued by the mesh CA for the <c>--webhook-dns</c> names (the API server checks it
/// against the webhook configuration's <c>caBundle</c>, the mesh roots), kept in memory, and replaced once past half its
/// lifetime or once a CA rotation changed the signer; each handshake reads the current one, so rotation needs no restart and drops no connection.
/// </summary>
internal sealed class WebhookCertificate(CertificateAuthority ca, IReadOnlyList<string> dnsNames)
{
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(24);

    private readonly Lock _gate = new();
    private (SslStreamCertificateContext Context, DateTimeOffset RenewAt, X509Certificate2 Signer)? _current;

    public IReadOnlyList<string> DnsNames { get; } = dnsNames;

    /// <summary>The certificate for this handshake, issued on first use and again once past half its lifetime.</summary>
    public SslStreamCertificateContext Current
    {
        get
        {
            if (_current is { } c && ca.Time.GetUtcNow() < c.RenewAt && ReferenceEquals(c.Signer, ca.SigningCertificate))
            {
                return c.Context;
            }
            lock (_gate)
            {
                if (_current is not { } s || ca.Time.GetUtcNow() >= s.RenewAt || !ReferenceEquals(s.Signer, ca.SigningCertificate))
                {
                    var signer = ca.SigningCertificate;
                    using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                    var publicKey = new CertificateRequest("CN=unused", key, HashAlgorithmName.SHA256).PublicKey;
                    using var issued = ca.IssueServerCertificate(DnsNames, publicKey, Lifetime);
                    var certificate = issued.CopyWithPrivateKey(key);
                    var context = SslStreamCertificateContext.Create(certificate, [.. ca.ChainAfterLeaf], offline: true);
                    _current = (context, RotationSchedule.RenewAt(certificate.NotBefore.ToUniversalTime(), certificate.NotAfter.ToUniversalTime(), 0.5), signer);
                }
                return _current.Value.Context;
            }
        }
    }
}
