using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Tests.Tls;

/// <summary>
/// The OS's CA store is kept out of the sidecar's handshakes; the JWKS client's roots come from where the default
/// store would have read them (fetching over HTTPS with them: JwtAuthenticatorTests).
/// </summary>
[Collection(nameof(MemoryTrimmerTests))] // changes this process's environment: nothing runs beside it
public sealed class SystemTrustStoreTests
{
    [Fact]
    public void The_default_store_is_pointed_at_nothing_where_openssl_reads_it_and_the_operators_choice_is_kept()
    {
        var saved = (File: Environment.GetEnvironmentVariable(SystemTrustStore.FileVariable), Directories: Environment.GetEnvironmentVariable(SystemTrustStore.DirectoryVariable));
        var native = (File: NativeValue(SystemTrustStore.FileVariable), Directories: NativeValue(SystemTrustStore.DirectoryVariable));
        try
        {
            Environment.SetEnvironmentVariable(SystemTrustStore.FileVariable, "/etc/my-ca.pem");
            Environment.SetEnvironmentVariable(SystemTrustStore.DirectoryVariable, null);
            Assert.True(SystemTrustStore.Detach());

            // OpenSSL (and .NET's store loader through it) reads the native environment, not .NET's copy of it.
            Assert.Equal("/dev/null", NativeValue(SystemTrustStore.FileVariable));
            Assert.Equal("/dev/null", NativeValue(SystemTrustStore.DirectoryVariable));
            Assert.Equal(new SystemTrustStore.Sources("/etc/my-ca.pem", null), SystemTrustStore.Original);
        }
        finally
        {
            Restore(SystemTrustStore.FileVariable, native.File);
            Restore(SystemTrustStore.DirectoryVariable, native.Directories);
            Environment.SetEnvironmentVariable(SystemTrustStore.FileVariable, saved.File);
            Environment.SetEnvironmentVariable(SystemTrustStore.DirectoryVariable, saved.Directories);
        }
    }

    [Fact]
    public void Public_endpoints_trust_the_operators_file_or_directory_else_the_first_distribution_bundle()
    {
        var directory = Directory.CreateTempSubdirectory("ztm-bundles-");
        try
        {
            using var first = SelfSigned("CN=first");
            using var second = SelfSigned("CN=second");
            var missing = Path.Combine(directory.FullName, "missing.pem");
            var both = Path.Combine(directory.FullName, "both.pem");
            var secondOnly = Path.Combine(directory.FullName, "second.pem");
            File.WriteAllText(both, first.ExportCertificatePem() + "\n" + second.ExportCertificatePem());
            File.WriteAllText(secondOnly, second.ExportCertificatePem());
            File.WriteAllBytes(Path.Combine(directory.FullName, "README"), [0x30, 0x82, 0xff]); // not PEM: skipped

            string[] Subjects(SystemTrustStore.Sources original, params string[] bundles) =>
                [.. SystemTrustStore.PublicEndpointPolicy(original, bundles)!.CustomTrustStore.Select(c => c.Subject).Distinct().Order()];

            Assert.Null(SystemTrustStore.PublicEndpointPolicy(null, [both])); // not detached: the default store decides
            Assert.Equal(["CN=second"], Subjects(new(secondOnly, directory.FullName), both));
            Assert.Equal(["CN=first", "CN=second"], Subjects(new(null, $"{missing}:{directory.FullName}"), secondOnly));
            Assert.Equal(["CN=first", "CN=second"], Subjects(new(null, null), missing, both, secondOnly));

            var policy = SystemTrustStore.PublicEndpointPolicy(new(null, null), [both])!;
            Assert.Equal(X509ChainTrustMode.CustomRootTrust, policy.TrustMode);
            Assert.Equal(X509RevocationMode.NoCheck, policy.RevocationMode);

            var error = Assert.Throws<FileNotFoundException>(() => SystemTrustStore.PublicEndpointPolicy(new(null, null), [missing]));
            Assert.Equal($"no CA certificates for HTTPS outside the mesh in {missing}; set SSL_CERT_FILE to a CA bundle", error.Message);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static X509Certificate2 SelfSigned(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new CertificateRequest(subject, key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddHours(1));
    }

    private static string? NativeValue(string name) => Marshal.PtrToStringUTF8(GetEnv(name));

    private static void Restore(string name, string? value) =>
        Assert.Equal(0, value is null ? UnsetEnv(name) : SetEnv(name, value, 1));

    [DllImport("libc", EntryPoint = "getenv")]
    private static extern nint GetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name);

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    [DllImport("libc", EntryPoint = "unsetenv")]
    private static extern int UnsetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name);
}
