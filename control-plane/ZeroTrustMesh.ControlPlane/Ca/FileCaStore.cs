using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>Where the CA came from, for the start-up line.</summary>
internal enum CaOrigin { Created, Loaded, PlugIn }

/// <summary>
/// Where the CA's material lives: files in the data directory standalone (<see cref="FileCaStore"/>), a Kubernetes
/// Secret next. Loaded once, before anything that signs is built.
/// </summary>
internal interface ICaStore
{
    /// <summary>Where the material is, for the start-up line ("in /var/lib/ztm").</summary>
    string Location { get; }

    /// <summary>Where the trust bundle workloads and operators are given is published (a PEM file standalone).</summary>
    string BundleLocation { get; }

    /// <summary>
    /// The CA to sign with: loaded, created on first start, or the operator's own (plug-in CA). After a root rotation the
    /// rotation record (<see cref="LoadRotation"/>) says which root signs; the caller applies it.
    /// </summary>
    /// <exception cref="IOException">The material cannot be read or written.</exception>
    /// <exception cref="InvalidDataException">The material is not a usable CA.</exception>
    /// <exception cref="CryptographicException">A certificate or key does not parse.</exception>
    (CertificateAuthority Ca, CaOrigin Origin) LoadOrCreate();

    /// <summary>
    /// The CA rotation record (<see cref="CaRotationState.FromBytes"/>): the roots, their roles and the phase, one blob
    /// (a file standalone; one more key of the CA Secret in Kubernetes). Null when no rotation was ever started.
    /// </summary>
    /// <exception cref="IOException">The record cannot be read.</exception>
    /// <exception cref="InvalidDataException">The record does not parse.</exception>
    CaRotationState? LoadRotation();

    /// <summary>
    /// Saves the record (<see cref="CaRotationState.ToBytes"/>) as a whole, replacing the last one, before the step it
    /// records takes effect. A store whose bundle is a file (<see cref="BundleLocation"/>) rewrites it from the record; in
    /// Kubernetes the bundle reaches the ConfigMaps and the webhook through <see cref="TrustBundleFeed"/>, so a Secret-backed
    /// store only writes the blob (one more key of the CA Secret, with the Secret's resourceVersion).
    /// </summary>
    /// <exception cref="IOException">The record cannot be written: the step does not happen.</exception>
    void SaveRotation(CaRotationState state);

    /// <summary>
    /// A step another replica saved takes effect here (<see cref="CaRotation.Refresh"/>): the bundle file in this replica's
    /// data directory (ztmctl's config names it) is rewritten from the record, as <see cref="SaveRotation"/> rewrites it.
    /// </summary>
    /// <exception cref="IOException">The bundle file cannot be written.</exception>
    void Followed(CaRotationState state);
}

/// <summary>
/// Creates the mesh CA on first start, or loads it from the data directory, or takes the operator's own
/// (plug-in CA). Files: <c>ca/ca.crt</c>, <c>ca/ca.key</c> (0600) and <c>bundle.pem</c>, the trust bundle
/// that workloads and operators are given. A restart keeps the same CA and so the same trust bundle. A root rotation
/// keeps its record in <c>ca/rotation.json</c> (0600) and keeps <c>ca/ca.crt</c> and <c>ca/ca.key</c> the root that signs.
/// </summary>
internal sealed class FileCaStore(ControlPlaneOptions options, TimeProvider time) : ICaStore
{
    public static readonly TimeSpan RootLifetime = TimeSpan.FromDays(3650);

    private string CertPath => Path.Combine(options.DataDir, "ca", "ca.crt");

    private string KeyPath => Path.Combine(options.DataDir, "ca", "ca.key");

    private string RotationPath => Path.Combine(options.DataDir, "ca", "rotation.json");

    public static string BundlePath(string dataDir) => Path.Combine(dataDir, "bundle.pem");

    public string Location => options.DataDir;

    public string BundleLocation => BundlePath(options.DataDir);

    public (CertificateAuthority Ca, CaOrigin Origin) LoadOrCreate()
    {
        var dataDir = options.DataDir;
        Directory.CreateDirectory(dataDir);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(dataDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        CertificateAuthority ca;
        CaOrigin origin;
        if (options.PlugInCa is { } plugIn)
        {
            ca = LoadPlugIn(plugIn, options.TrustDomain, time);
            origin = CaOrigin.PlugIn;
        }
        else
        {
            var certPath = CertPath;
            var keyPath = KeyPath;
            X509Certificate2 root;
            if (File.Exists(certPath) && File.Exists(keyPath))
            {
                root = Pem.LoadCertificateWithKey(certPath, keyPath);
                origin = CaOrigin.Loaded;
            }
            else
            {
                root = CreateRoot(options.TrustDomain, time, options.CaRootLifetime);
                AtomicFile.WriteOwnerOnly(keyPath, Pem.PrivateKeyPem(root));
                AtomicFile.WriteReadable(certPath, root.ExportCertificatePem() + "\n");
                origin = CaOrigin.Created;
            }
            ca = new CertificateAuthority(root, [], new TrustBundle(options.TrustDomain, [X509CertificateLoader.LoadCertificate(root.RawData)], 1), time);
        }

        var rotation = origin == CaOrigin.PlugIn ? null : LoadRotation();
        PublishBundle(rotation?.Bundle(options.TrustDomain) ?? ca.Bundle);
        return (ca, origin);
    }

    public CaRotationState? LoadRotation() =>
        File.Exists(RotationPath) ? CaRotationState.FromBytes(File.ReadAllBytes(RotationPath), RotationPath) : null;

    public void SaveRotation(CaRotationState state)
    {
        AtomicFile.WriteOwnerOnly(RotationPath, System.Text.Encoding.UTF8.GetString(state.ToBytes()));
        // The files name the root that signs, as before any rotation; the record alone is read back.
        if (File.ReadAllText(CertPath) != state.Current.ExportCertificatePem() + "\n")
        {
            AtomicFile.WriteOwnerOnly(KeyPath, Pem.PrivateKeyPem(state.Current));
            AtomicFile.WriteReadable(CertPath, state.Current.ExportCertificatePem() + "\n");
        }
        PublishBundle(state.Bundle(options.TrustDomain));
    }

    public void Followed(CaRotationState state) => PublishBundle(state.Bundle(options.TrustDomain));

    private void PublishBundle(TrustBundle bundle)
    {
        var bundlePem = bundle.ToPem();
        var bundlePath = BundlePath(options.DataDir);
        if (!File.Exists(bundlePath) || File.ReadAllText(bundlePath) != bundlePem)
        {
            AtomicFile.WriteReadable(bundlePath, bundlePem);
        }
    }

    /// <summary>
    /// A self-signed ECDSA P-256 root: cA=true, keyCertSign + cRLSign, and no SPIFFE ID path. A root made by a rotation
    /// carries its creation time in its name (<paramref name="generation"/>), so two roots of one trust domain are told apart.
    /// </summary>
    public static X509Certificate2 CreateRoot(string trustDomain, TimeProvider time, TimeSpan? lifetime = null, bool generation = false)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var name = generation ? $"ZeroTrustMesh CA {trustDomain} {time.GetUtcNow():yyyy-MM-ddTHH:mm:ssZ}" : $"ZeroTrustMesh CA {trustDomain}";
        var request = new CertificateRequest($"O=ZeroTrustMesh, CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        // The trust domain's own ID (no path) names which trust domain this root anchors.
        request.CertificateExtensions.Add(SubjectAltNames.ForUri(SpiffeId.ForTrustDomain(trustDomain).Value));
        var now = time.GetUtcNow();
        return request.CreateSelfSigned(now - Revocation.IssuanceBackdate, now + (lifetime ?? RootLifetime));
    }

    private static CertificateAuthority LoadPlugIn(PlugInCa plugIn, string trustDomain, TimeProvider time)
    {
        var signing = Pem.LoadCertificateWithKey(plugIn.CertificatePath, plugIn.KeyPath);
        var basic = signing.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
        var usage = signing.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        if (basic is not { CertificateAuthority: true } || (usage is not null && !usage.KeyUsages.HasFlag(X509KeyUsageFlags.KeyCertSign)))
        {
            throw new InvalidDataException($"{plugIn.CertificatePath}: not a CA certificate (it needs cA=true and keyCertSign).");
        }
        if (signing.NotAfter.ToUniversalTime() <= time.GetUtcNow())
        {
            throw new InvalidDataException($"{plugIn.CertificatePath}: the CA certificate expired at {signing.NotAfter.ToUniversalTime():O}.");
        }

        var selfSigned = signing.SubjectName.RawData.AsSpan().SequenceEqual(signing.IssuerName.RawData);
        var roots = new X509Certificate2Collection();
        var intermediates = new X509Certificate2Collection();
        if (plugIn.BundlePath is { } bundlePath)
        {
            roots.ImportFromPemFile(bundlePath);
        }
        else if (selfSigned)
        {
            roots.Add(X509CertificateLoader.LoadCertificate(signing.RawData));
        }
        else
        {
            throw new InvalidDataException($"{plugIn.CertificatePath} is an intermediate CA: pass its roots with --ca-bundle.");
        }
        if (plugIn.ChainPath is { } chainPath)
        {
            intermediates.ImportFromPemFile(chainPath);
        }

        var bundle = new TrustBundle(trustDomain, roots, 1);
        var ca = new CertificateAuthority(signing, [.. intermediates], bundle, time);
        CheckChainsToBundle(ca, plugIn.CertificatePath);
        return ca;
    }

    internal static void CheckChainsToBundle(CertificateAuthority ca, string path)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.CustomTrustStore.AddRange(ca.Bundle.Roots.ToArray());
        chain.ChainPolicy.ExtraStore.AddRange(ca.Intermediates.ToArray());
        if (!chain.Build(ca.SigningCertificate))
        {
            throw new InvalidDataException($"{path}: the CA certificate does not chain to the given bundle ({string.Join(", ", chain.ChainStatus.Select(s => s.Status))}).");
        }
    }
}
