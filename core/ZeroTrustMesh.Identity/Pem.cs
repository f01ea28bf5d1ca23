using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.Identity;

/// <summary>Reading PEM certificates with their keys, and a key as PEM; files are written with <see cref="AtomicFile"/>.</summary>
public static class Pem
{
    /// <summary>Loads a PEM certificate and its PEM private key (ECDSA or RSA, PKCS#8 or traditional).</summary>
    public static X509Certificate2 LoadCertificateWithKey(string certificatePath, string keyPath) =>
        X509Certificate2.CreateFromPemFile(certificatePath, keyPath);

    public static string PrivateKeyPem(X509Certificate2 certificate) =>
        (certificate.GetECDsaPrivateKey() as AsymmetricAlgorithm ?? certificate.GetRSAPrivateKey()
            ?? throw new InvalidOperationException("The certificate has no private key.")).ExportPkcs8PrivateKeyPem();
}
