using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// The control plane's own certificates, both issued by its CA: the gRPC serving certificate
/// (<c>spiffe://td/ztm/controlplane</c>, renewed in memory at half-life and picked up on the next handshake)
/// and the operator credential (<c>spiffe://td/ztm/operator</c>, files 0600 in the data directory). Both are issued
/// again as soon as a CA rotation changes the signer, so neither depends on a root that is about to leave the bundle.
/// </summary>
internal sealed class ControlPlaneCredentials(CertificateAuthority ca, ICaStore caStore, ControlPlaneOptions options)
{
    public static readonly TimeSpan ServingLifetime = TimeSpan.FromHours(24);
    public static readonly TimeSpan OperatorLifetime = TimeSpan.FromDays(7);

    private readonly Lock _gate = new();
    private (SslStreamCertificateContext Context, DateTimeOffset RenewAt, X509Certificate2 Signer)? _serving;
    private string? _address;

    public SpiffeId ServerId { get; } = SpiffeId.ForMesh(options.TrustDomain, "controlplane");

    public SpiffeId OperatorId { get; } = SpiffeId.ForMesh(options.TrustDomain, "operator");

    /// <summary>The serving certificate for this handshake; cached, and replaced once past half its lifetime.</summary>
    public SslStreamCertificateContext ServingCertificate
    {
        get
        {
            var current = _serving;
            if (current is { } c && ca.Time.GetUtcNow() < c.RenewAt && ReferenceEquals(c.Signer, ca.SigningCertificate))
            {
                return c.Context;
            }
            lock (_gate)
            {
                if (_serving is not { } s || ca.Time.GetUtcNow() >= s.RenewAt || !ReferenceEquals(s.Signer, ca.SigningCertificate))
                {
                    var signer = ca.SigningCertificate;
                    var certificate = IssueWithNewKey(ServerId, ServingLifetime, ["localhost", "127.0.0.1", "::1", options.ListenAddress.ToString()]);
                    var context = SslStreamCertificateContext.Create(certificate, [.. ca.ChainAfterLeaf], offline: true);
                    _serving = (context, RotationSchedule.RenewAt(certificate.NotBefore.ToUniversalTime(), certificate.NotAfter.ToUniversalTime(), 0.5), signer);
                }
                return _serving.Value.Context;
            }
        }
    }

    /// <summary>
    /// Makes sure the operator credential in the data directory is current (issues it if missing, issued by
    /// another CA, or past half its lifetime) and writes ztmctl's config pointing at it.
    /// </summary>
    public OperatorConfig EnsureOperatorCredential(string address)
    {
        _address = address;
        var dir = Path.Combine(options.DataDir, "operator");
        var certPath = Path.Combine(dir, "operator.crt");
        var keyPath = Path.Combine(dir, "operator.key");
        if (!IsCurrent(certPath, keyPath))
        {
            var certificate = IssueWithNewKey(OperatorId, OperatorLifetime, dnsNames: null);
            AtomicFile.WriteOwnerOnly(keyPath, Pem.PrivateKeyPem(certificate));
            AtomicFile.WriteOwnerOnly(certPath, certificate.ExportCertificatePem() + "\n" + string.Concat(ca.ChainAfterLeaf.Select(c => c.ExportCertificatePem() + "\n")));
        }
        var config = new OperatorConfig(address, options.TrustDomain, caStore.BundleLocation, certPath, keyPath);
        config.Save(options.OperatorConfigPath);
        return config;
    }

    /// <summary>
    /// After a CA rotation changed the signer: the operator credential is issued again from it (its config keeps the
    /// address it was written with). Nothing to do before the control plane has written one.
    /// </summary>
    public void RenewFromCurrentSigner()
    {
        if (_address is { } address)
        {
            EnsureOperatorCredential(address);
        }
    }

    private bool IsCurrent(string certPath, string keyPath)
    {
        if (!File.Exists(certPath) || !File.Exists(keyPath))
        {
            return false;
        }
        try
        {
            using var certificate = Pem.LoadCertificateWithKey(certPath, keyPath);
            var now = ca.Time.GetUtcNow();
            var verified = SvidVerifier.Verify(certificate, ca.ChainAfterLeaf, ca.Bundle, now);
            return verified.IsValid && verified.Id == OperatorId
                && KeyIds.Authority(certificate) == KeyIds.Subject(ca.SigningCertificate)
                && now < RotationSchedule.RenewAt(certificate.NotBefore.ToUniversalTime(), certificate.NotAfter.ToUniversalTime(), 0.5);
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    private X509Certificate2 IssueWithNewKey(SpiffeId id, TimeSpan lifetime, IEnumerable<string>? dnsNames)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var publicKey = new CertificateRequest("CN=unused", key, HashAlgorithmName.SHA256).PublicKey;
        using var certificate = ca.IssueSvid(id, publicKey, lifetime, dnsNames);
        return certificate.CopyWithPrivateKey(key);
    }
}
