using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>Certificates a test mints itself: an operator's own CA (plug-in CA), a foreign CA, hand-made SVIDs.</summary>
internal static class TestCertificates
{
    private static readonly OidCollection ServerAndClientAuth = [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")];

    /// <summary>A CA certificate with its key: cA=true, keyCertSign + cRLSign; self-signed unless <paramref name="issuer"/> is given.</summary>
    public static X509Certificate2 CreateCa(string commonName, X509Certificate2? issuer = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"O=ZeroTrustMesh tests, CN={commonName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        if (issuer is null)
        {
            return request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(30));
        }
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
        using var certificate = request.Create(issuer, now.AddMinutes(-4), now.AddDays(29), RandomNumberGenerator.GetBytes(16));
        return certificate.CopyWithPrivateKey(key);
    }

    /// <summary>
    /// An SVID as the mesh CA would make it (one URI SAN, leaf, digitalSignature, server+client auth) signed by
    /// <paramref name="issuer"/>'s key, with any validity, also one the issuer could not really have given.
    /// </summary>
    public static X509Certificate2 CreateSvid(X509Certificate2 issuer, string spiffeId, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=ZeroTrustMesh tests", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(ServerAndClientAuth, false));
        request.CertificateExtensions.Add(SubjectAltNames.ForUri(spiffeId));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
        var signer = X509SignatureGenerator.CreateForECDsa(issuer.GetECDsaPrivateKey() ?? throw new ArgumentException("The issuer needs its ECDSA key.", nameof(issuer)));
        using var certificate = request.Create(issuer.SubjectName, signer, notBefore, notAfter, RandomNumberGenerator.GetBytes(16));
        return certificate.CopyWithPrivateKey(key);
    }

    /// <summary>Writes a certificate (and, if given, its key) as PEM files; returns the paths.</summary>
    public static (string Certificate, string Key) WritePem(X509Certificate2 certificate, string directory, string name)
    {
        var certificatePath = Path.Combine(directory, name + ".pem");
        var keyPath = Path.Combine(directory, name + ".key");
        File.WriteAllText(certificatePath, certificate.ExportCertificatePem() + "\n");
        if (certificate.HasPrivateKey)
        {
            AtomicFile.WriteOwnerOnly(keyPath, Pem.PrivateKeyPem(certificate));
        }
        return (certificatePath, keyPath);
    }
}
