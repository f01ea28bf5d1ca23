using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using k8s;
using k8s.Autorest;
using k8s.Models;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// The CA in a Kubernetes Secret (<c>--kubernetes</c>; <c>ztm-ca</c> unless <c>--ca-secret</c> names another), so every
/// replica signs with the same key and sidecars trust one bundle whichever replica they reach. The Secret has the shape
/// cert-manager writes for a CA certificate (type <c>kubernetes.io/tls</c>): <c>tls.crt</c> the signing certificate
/// (then any intermediates), <c>tls.key</c> its key, <c>ca.crt</c> the roots of the trust bundle.
/// 1. The Secret exists: its CA is used — one an earlier replica created, or the operator's own (cert-manager's, or
///    written by hand), checked as a plug-in CA (a CA certificate, unexpired, chaining to <c>ca.crt</c>).
/// 2. It does not: this replica creates a root and the Secret with create-if-absent semantics. When another replica
///    created it first (409 AlreadyExists) that one's CA is read and used, and the root made here is thrown away.
/// The bundle is also written to <c>bundle.pem</c> in the data directory, for ztmctl's config and the start-up line.
/// A CA rotation's record lives in this Secret too (<c>rotation.json</c>, one more key), written by the leading replica
/// with the Secret's resourceVersion; the other replicas read it back (<see cref="CaRotationFollower"/>). An operator's
/// Secret is theirs: it has no record, and rotation is refused for it as for a plug-in CA.
/// </summary>
internal sealed class SecretCaStore(IKubernetes client, string @namespace, ControlPlaneOptions options, TimeProvider time) : ICaStore
{
    public const string CertificateKey = "tls.crt";
    public const string PrivateKeyKey = "tls.key";
    public const string RootsKey = "ca.crt";
    public const string RotationKey = "rotation.json";

    /// <summary>Marks a Secret this control plane created (absent: the operator supplied it).</summary>
    public const string ManagedByLabel = "app.kubernetes.io/managed-by";
    public const string ManagedBy = "ztm-controlplane";

    public string Location => $"Secret {@namespace}/{options.CaSecret}";

    public string BundleLocation => FileCaStore.BundlePath(options.DataDir);

    /// <exception cref="IOException">The API could not be reached or refused (the message says what it answered).</exception>
    public (CertificateAuthority Ca, CaOrigin Origin) LoadOrCreate()
    {
        var (ca, origin) = LoadOrCreateAsync(CancellationToken.None).GetAwaiter().GetResult();
        Directory.CreateDirectory(options.DataDir);
        var bundlePem = ca.Bundle.ToPem();
        var bundlePath = BundleLocation;
        if (!File.Exists(bundlePath) || File.ReadAllText(bundlePath) != bundlePem)
        {
            AtomicFile.WriteReadable(bundlePath, bundlePem);
        }
        return (ca, origin);
    }

    public async Task<(CertificateAuthority Ca, CaOrigin Origin)> LoadOrCreateAsync(CancellationToken cancellation)
    {
        if (await ReadAsync(cancellation) is { } existing)
        {
            return (Load(existing), IsManaged(existing) ? CaOrigin.Loaded : CaOrigin.PlugIn);
        }

        using var root = FileCaStore.CreateRoot(options.TrustDomain, time);
        var certificatePem = root.ExportCertificatePem() + "\n";
        var secret = new V1Secret
        {
            ApiVersion = "v1",
            Kind = "Secret",
            Metadata = new V1ObjectMeta
            {
                Name = options.CaSecret,
                NamespaceProperty = @namespace,
                Labels = new Dictionary<string, string> { [ManagedByLabel] = ManagedBy },
            },
            Type = "kubernetes.io/tls",
            Data = new Dictionary<string, byte[]>
            {
                [CertificateKey] = Encoding.ASCII.GetBytes(certificatePem),
                [PrivateKeyKey] = Encoding.ASCII.GetBytes(Pem.PrivateKeyPem(root)),
                [RootsKey] = Encoding.ASCII.GetBytes(certificatePem),
            },
        };
        try
        {
            var created = await client.CoreV1.CreateNamespacedSecretAsync(secret, @namespace, cancellationToken: cancellation);
            return (Load(created), CaOrigin.Created);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict)
        {
            // Another replica created it between our read and our create: every replica signs with the winner's CA.
            var winner = await ReadAsync(cancellation) ?? throw new IOException($"{Location} was created by another replica and then deleted; start again");
            return (Load(winner), CaOrigin.Loaded);
        }
        catch (HttpOperationException e)
        {
            throw Unreachable("create", e);
        }
        catch (HttpRequestException e)
        {
            throw new IOException($"cannot create {Location}: {e.Message}", e);
        }
    }

    public CaRotationState? LoadRotation()
    {
        var secret = ReadAsync(CancellationToken.None).GetAwaiter().GetResult();
        return secret is not null && IsManaged(secret) && secret.Data?.TryGetValue(RotationKey, out var record) == true
            ? CaRotationState.FromBytes(record, $"{Location} key {RotationKey}")
            : null;
    }

    /// <exception cref="IOException">The Secret is gone, is the operator's, or the API refused the update (after retries on conflicts).</exception>
    public void SaveRotation(CaRotationState state)
    {
        for (var attempt = 1; ; attempt++)
        {
            var secret = ReadAsync(CancellationToken.None).GetAwaiter().GetResult()
                ?? throw new IOException($"{Location} is gone: the rotation step does not happen");
            if (!IsManaged(secret))
            {
                throw new IOException($"{Location} was supplied by the operator: its CA is rotated by them, not by the control plane");
            }
            secret.Data ??= new Dictionary<string, byte[]>();
            secret.Data[RotationKey] = state.ToBytes();
            try
            {
                // The read resourceVersion goes with the update: a replica writing at the same moment gets 409 and reads again.
                client.CoreV1.ReplaceNamespacedSecretAsync(secret, options.CaSecret, @namespace).GetAwaiter().GetResult();
                break;
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict && attempt < 3)
            {
            }
            catch (HttpOperationException e)
            {
                throw Unreachable("update", e);
            }
            catch (HttpRequestException e)
            {
                throw new IOException($"cannot update {Location}: {e.Message}", e);
            }
        }
        AtomicFile.WriteReadable(BundleLocation, state.Bundle(options.TrustDomain).ToPem());
    }

    public void Followed(CaRotationState state) => AtomicFile.WriteReadable(BundleLocation, state.Bundle(options.TrustDomain).ToPem());

    private async Task<V1Secret?> ReadAsync(CancellationToken cancellation)
    {
        try
        {
            return await client.CoreV1.ReadNamespacedSecretAsync(options.CaSecret, @namespace, cancellationToken: cancellation);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        catch (HttpOperationException e)
        {
            throw Unreachable("read", e);
        }
        catch (HttpRequestException e)
        {
            throw new IOException($"cannot read {Location}: {e.Message}", e);
        }
    }

    private IOException Unreachable(string what, HttpOperationException e) =>
        new($"cannot {what} {Location}: the API answered {(int)e.Response.StatusCode} {e.Response.StatusCode}{(e.Response.Content is { Length: > 0 } body ? ": " + body : "")}", e);

    private static bool IsManaged(V1Secret secret) =>
        secret.Metadata?.Labels?.TryGetValue(ManagedByLabel, out var by) == true && by == ManagedBy;

    /// <summary>The CA of a Secret: <c>tls.crt</c> (signing certificate, then intermediates), <c>tls.key</c>, <c>ca.crt</c> (roots).</summary>
    private CertificateAuthority Load(V1Secret secret)
    {
        string Text(string key) =>
            secret.Data?.TryGetValue(key, out var bytes) == true && bytes.Length > 0
                ? Encoding.ASCII.GetString(bytes)
                : throw new InvalidDataException($"{Location} has no '{key}' (it needs {CertificateKey}, {PrivateKeyKey} and {RootsKey}, as cert-manager writes them)");

        var chainPem = Text(CertificateKey);
        X509Certificate2 signing;
        try
        {
            signing = X509Certificate2.CreateFromPem(chainPem, Text(PrivateKeyKey));
        }
        catch (CryptographicException e)
        {
            throw new InvalidDataException($"{Location}: {CertificateKey} and {PrivateKeyKey} are not a PEM certificate and its key: {e.Message}", e);
        }
        var chain = new X509Certificate2Collection();
        chain.ImportFromPem(chainPem);
        var intermediates = chain.Skip(1).ToList();

        var basic = signing.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
        var usage = signing.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        if (basic is not { CertificateAuthority: true } || (usage is not null && !usage.KeyUsages.HasFlag(X509KeyUsageFlags.KeyCertSign)))
        {
            throw new InvalidDataException($"{Location}: {CertificateKey} is not a CA certificate (it needs cA=true and keyCertSign; with cert-manager, isCA: true)");
        }
        if (signing.NotAfter.ToUniversalTime() <= time.GetUtcNow())
        {
            throw new InvalidDataException($"{Location}: the CA certificate expired at {signing.NotAfter.ToUniversalTime():O}");
        }

        var roots = new X509Certificate2Collection();
        if (secret.Data!.TryGetValue(RootsKey, out var rootsPem) && rootsPem.Length > 0)
        {
            roots.ImportFromPem(Encoding.ASCII.GetString(rootsPem));
        }
        else if (signing.SubjectName.RawData.AsSpan().SequenceEqual(signing.IssuerName.RawData))
        {
            roots.Add(X509CertificateLoader.LoadCertificate(signing.RawData));
        }
        else
        {
            throw new InvalidDataException($"{Location}: {CertificateKey} is an intermediate CA, and there is no {RootsKey} with its roots");
        }
        var ca = new CertificateAuthority(signing, intermediates, new TrustBundle(options.TrustDomain, roots, 1), time);
        FileCaStore.CheckChainsToBundle(ca, $"{Location} {CertificateKey}");
        return ca;
    }
}
