using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.Identity;

/// <summary>Reading and writing key material files: private keys are written 0600 and replaced atomically.</summary>
public static class Pem
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Writes <paramref name="contents"/> to a temporary file with mode 0600 and renames it into place.</summary>
    public static void WriteSecret(string path, string contents) => WriteAtomically(path, contents, OwnerOnly);

    public static void WritePublic(string path, string contents) =>
        WriteAtomically(path, contents, OwnerOnly | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

    private static void WriteAtomically(string path, string contents, UnixFileMode mode)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + ".tmp";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = mode;
        }
        using (var stream = new FileStream(temp, options))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(contents);
        }
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(temp, mode); // the file may have existed with looser bits
        }
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Loads a PEM certificate and its PEM private key (ECDSA or RSA, PKCS#8 or traditional).</summary>
    public static X509Certificate2 LoadCertificateWithKey(string certificatePath, string keyPath) =>
        X509Certificate2.CreateFromPemFile(certificatePath, keyPath);

    public static string PrivateKeyPem(X509Certificate2 certificate) =>
        (certificate.GetECDsaPrivateKey() as AsymmetricAlgorithm ?? certificate.GetRSAPrivateKey()
            ?? throw new InvalidOperationException("The certificate has no private key.")).ExportPkcs8PrivateKeyPem();
}
