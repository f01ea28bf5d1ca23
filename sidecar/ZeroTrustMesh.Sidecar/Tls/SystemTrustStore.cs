using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.Sidecar.Tls;

/// <summary>
/// The operating system's CA certificates. A sidecar needs them for one thing: fetching a JWKS over HTTPS. Mesh and
/// control-plane TLS trust the mesh's bundle alone (their validation callbacks decide), yet .NET on Linux reads the
/// whole OS store into the process at its first TLS handshake, because every <c>X509Chain.Build</c> adds it, whatever
/// the chain policy says: about 150 PEM files, measured at ~100 ms of the sidecar's start-up (exec to ready 200 → 95 ms)
/// and 1 MiB of its private memory (RssAnon 11.7 → 10.7 MiB at idle).
/// <para>
/// So the sidecar points OpenSSL's default store at nothing before its first handshake, and its JWKS client trusts
/// what the default store would have been, read on its first fetch: <c>SSL_CERT_FILE</c> if the environment sets it,
/// else the files in <c>SSL_CERT_DIR</c>, else the distribution's CA bundle.
/// </para>
/// </summary>
internal static class SystemTrustStore
{
    public const string FileVariable = "SSL_CERT_FILE";
    public const string DirectoryVariable = "SSL_CERT_DIR";
    private const string Nothing = "/dev/null";

    /// <summary>Where Linux distributions keep the OS CA bundle: Debian/Ubuntu, Fedora/RHEL, openSUSE, RHEL 7, Alpine.</summary>
    public static readonly IReadOnlyList<string> BundleFiles =
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];

    /// <summary>Where the JWKS client's roots come from; null until <see cref="Detach"/> (the default store is in place).</summary>
    public static Sources? Original { get; private set; }

    /// <summary>The roots a default store would have read: a file, or the files of directories (colon-separated).</summary>
    public sealed record Sources(string? File, string? Directories);

    /// <summary>
    /// Called first in <c>Main</c>, before any TLS. OpenSSL reads these variables with <c>getenv</c>, so they are set
    /// with libc's <c>setenv</c>: .NET's environment API does not change the native environment on Linux (and keeps
    /// showing the operator's values, read here before the change).
    /// </summary>
    public static bool Detach()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        var original = new Sources(NonEmpty(Environment.GetEnvironmentVariable(FileVariable)), NonEmpty(Environment.GetEnvironmentVariable(DirectoryVariable)));
        if (SetEnv(FileVariable, Nothing, 1) != 0 || SetEnv(DirectoryVariable, Nothing, 1) != 0)
        {
            return false;
        }
        Original = original;
        return true;
    }

    /// <summary>
    /// The chain policy for HTTPS to endpoints outside the mesh: null (the default store) when it was not detached;
    /// else the roots of <paramref name="original"/>, or of the first of <paramref name="bundleFiles"/> that exists.
    /// </summary>
    /// <exception cref="FileNotFoundException">Nothing to read the roots from.</exception>
    public static X509ChainPolicy? PublicEndpointPolicy(Sources? original, IEnumerable<string> bundleFiles)
    {
        if (original is null)
        {
            return null;
        }
        IReadOnlyList<string> files = original.File is { } file ? [file]
            : original.Directories is { } directories
                ? directories.Split(':', StringSplitOptions.RemoveEmptyEntries).Where(Directory.Exists).SelectMany(Directory.EnumerateFiles).Order(StringComparer.Ordinal).ToList()
            : bundleFiles.Where(File.Exists).Take(1).ToList();
        // No revocation check, as HttpClient's own default (CheckCertificateRevocationList = false).
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        foreach (var path in files.Where(File.Exists))
        {
            try
            {
                policy.CustomTrustStore.ImportFromPemFile(path);
            }
            catch (CryptographicException)
            {
                // Not PEM (a certificate directory may hold other files): a default store skips these too.
            }
        }
        return policy.CustomTrustStore.Count > 0 ? policy
            : throw new FileNotFoundException($"no CA certificates for HTTPS outside the mesh in {original.File ?? original.Directories ?? string.Join(", ", bundleFiles)}; set {FileVariable} to a CA bundle");
    }

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    [DllImport("libc", EntryPoint = "setenv", SetLastError = true)]
    private static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);
}
