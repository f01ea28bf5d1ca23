using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar.Tests.Tls;

/// <summary>A throwaway CA minted in-process, and SVIDs as the mesh CA makes them (or with another extended key usage).</summary>
internal sealed class TestCa : IDisposable
{
    public static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    public static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");

    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public TestCa(string name)
    {
        var request = new CertificateRequest($"O=ZeroTrustMesh tests, CN={name}", _key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        Certificate = request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));
    }

    public X509Certificate2 Certificate { get; }

    /// <summary>An SVID with its key: leaf, digitalSignature, one URI SAN, and <paramref name="usages"/> (server and client auth unless told).</summary>
    public X509Certificate2 Svid(string spiffeId, params Oid[] usages)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=ZeroTrustMesh tests", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        var eku = new OidCollection();
        foreach (var usage in usages.Length > 0 ? usages : [ServerAuth, ClientAuth])
        {
            eku.Add(usage);
        }
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(eku, false));
        request.CertificateExtensions.Add(SubjectAltNames.ForUri(spiffeId));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(_key), now.AddMinutes(-1), now.AddHours(1), RandomNumberGenerator.GetBytes(16));
        // Exported and loaded again: SslStream on Linux needs a key it can hand to OpenSSL, not an ephemeral one.
        using var withKey = certificate.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    public void Dispose()
    {
        _key.Dispose();
        Certificate.Dispose();
    }
}
