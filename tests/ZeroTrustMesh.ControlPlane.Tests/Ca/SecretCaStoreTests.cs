using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Ca;

/// <summary>The CA in a Secret, against the Kubernetes API double: created once however many replicas start at once, or the operator's own.</summary>
public sealed class SecretCaStoreTests : IAsyncLifetime
{
    private const string Namespace = "ztm-system";
    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-secret-ca-").FullName;
    private KubernetesApiDouble _api = null!;

    public async Task InitializeAsync() => _api = await KubernetesApiDouble.StartAsync();

    public async Task DisposeAsync()
    {
        await _api.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Replicas_starting_at_once_create_one_CA_and_all_sign_with_it()
    {
        var stores = Enumerable.Range(0, 4).Select(i => Store($"replica-{i}")).ToList();

        var loaded = await Task.WhenAll(stores.Select(s => Task.Run(() => s.LoadOrCreateAsync(CancellationToken.None))));

        Assert.Single(loaded, l => l.Origin == CaOrigin.Created);
        Assert.Single(loaded.Select(l => l.Ca.SigningCertificate.Thumbprint).Distinct());
        var secret = _api.Get<V1Secret>("v1", "secrets", Namespace, "ztm-ca")!;
        Assert.Equal("kubernetes.io/tls", secret.Type);
        Assert.Equal(["ca.crt", "tls.crt", "tls.key"], secret.Data.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(loaded[0].Ca.SigningCertificate.Thumbprint, X509Certificate2.CreateFromPem(Encoding.ASCII.GetString(secret.Data["tls.crt"])).Thumbprint);
        Assert.Single(_api.Requests, r => r.Method == "POST" && r.Path.EndsWith("/secrets", StringComparison.Ordinal) && r.Status == 201);
    }

    [Fact]
    public async Task A_replica_that_loses_the_create_race_reads_the_winners_CA()
    {
        var (winner, origin) = await Store("a").LoadOrCreateAsync(CancellationToken.None);
        Assert.Equal(CaOrigin.Created, origin);
        // B read before A created (its read answers 404), then creates: 409 AlreadyExists, and it reads A's.
        _api.Fail(r => r.Method == "GET" && r.Path.Value!.EndsWith("/secrets/ztm-ca", StringComparison.Ordinal), 1, 404, "NotFound");

        var (loser, loserOrigin) = await Store("b").LoadOrCreateAsync(CancellationToken.None);

        Assert.Equal(CaOrigin.Loaded, loserOrigin);
        Assert.Equal(winner.SigningCertificate.Thumbprint, loser.SigningCertificate.Thumbprint);
        Assert.Contains(_api.Requests, r => r.Method == "POST" && r.Path.EndsWith("/secrets", StringComparison.Ordinal) && r.Status == 409);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = loser.IssueSvid(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders"), new PublicKey(key), TimeSpan.FromHours(1));
        Assert.True(Chains(leaf, winner.Bundle.Roots));
    }

    [Fact]
    public async Task The_rotation_record_is_one_more_key_of_the_Secret_that_every_replica_reads_back()
    {
        var leader = Store("a");
        var (ca, _) = await leader.LoadOrCreateAsync(CancellationToken.None);
        Assert.Null(leader.LoadRotation());
        using var next = FileCaStore.CreateRoot("cluster.local", TimeProvider.System, generation: true);
        var prepared = CaRotationState.Initial(ca.SigningCertificate) with
        {
            Phase = RotationPhase.Prepared, Next = next, BundleSequence = 2, PhaseSince = DateTimeOffset.UtcNow, StartedBy = "operator",
        };

        leader.SaveRotation(prepared);

        var secret = _api.Get<V1Secret>("v1", "secrets", Namespace, "ztm-ca")!;
        Assert.Equal(["ca.crt", "rotation.json", "tls.crt", "tls.key"], secret.Data.Keys.Order(StringComparer.Ordinal));
        var follower = Store("b").LoadRotation()!;
        Assert.Equal(RotationPhase.Prepared, follower.Phase);
        Assert.Equal(next.Thumbprint, follower.Next!.Thumbprint);
        Assert.True(follower.Next.HasPrivateKey);
        Assert.Equal([ca.SigningCertificate.Thumbprint, next.Thumbprint], follower.Roots.Select(r => r.Thumbprint));
        // The copy of the bundle for ztmctl follows the record: both roots while prepared.
        Assert.Equal(prepared.Bundle("cluster.local").ToPem(), File.ReadAllText(leader.BundleLocation));
        // The update carried the resourceVersion it read (optimistic concurrency), and the CA material is untouched.
        Assert.Contains(_api.Requests, r => r.Method == "PUT" && r.Path.EndsWith("/secrets/ztm-ca", StringComparison.Ordinal) && r.Status == 200);
        Assert.Equal(ca.SigningCertificate.Thumbprint, X509Certificate2.CreateFromPem(Encoding.ASCII.GetString(secret.Data["tls.crt"])).Thumbprint);
    }

    [Fact]
    public void An_operators_Secret_gets_no_rotation_record()
    {
        using var root = CreateCa("Operator Root", issuer: null);
        _api.Seed(new V1Secret
        {
            ApiVersion = "v1",
            Kind = "Secret",
            Metadata = new V1ObjectMeta { Name = "theirs", NamespaceProperty = Namespace },
            Type = "kubernetes.io/tls",
            Data = new Dictionary<string, byte[]>
            {
                ["tls.crt"] = Encoding.ASCII.GetBytes(root.ExportCertificatePem() + "\n"),
                ["tls.key"] = Encoding.ASCII.GetBytes(Pem.PrivateKeyPem(root)),
                ["ca.crt"] = Encoding.ASCII.GetBytes(root.ExportCertificatePem() + "\n"),
            },
        });
        var store = Store("b", secret: "theirs");
        var (ca, origin) = store.LoadOrCreate();
        Assert.Equal(CaOrigin.PlugIn, origin);

        var error = Assert.Throws<IOException>(() => store.SaveRotation(CaRotationState.Initial(ca.SigningCertificate)));

        Assert.Contains("supplied by the operator", error.Message, StringComparison.Ordinal);
        Assert.Null(store.LoadRotation());
    }

    [Fact]
    public async Task An_operator_supplied_cert_manager_secret_with_an_intermediate_CA_is_signed_with()
    {
        using var root = CreateCa("Operator Root", issuer: null);
        using var intermediate = CreateCa("Operator Mesh CA", issuer: root);
        {
            _api.Seed(new V1Secret
            {
                ApiVersion = "v1",
                Kind = "Secret",
                Metadata = new V1ObjectMeta { Name = "mesh-ca", NamespaceProperty = Namespace, Annotations = new Dictionary<string, string> { ["cert-manager.io/certificate-name"] = "mesh-ca" } },
                Type = "kubernetes.io/tls",
                Data = new Dictionary<string, byte[]>
                {
                    ["tls.crt"] = Encoding.ASCII.GetBytes(intermediate.ExportCertificatePem() + "\n"),
                    ["tls.key"] = Encoding.ASCII.GetBytes(Pem.PrivateKeyPem(intermediate)),
                    ["ca.crt"] = Encoding.ASCII.GetBytes(root.ExportCertificatePem() + "\n"),
                },
            });
        }
        var store = Store("a", secret: "mesh-ca");

        var (ca, origin) = store.LoadOrCreate();

        Assert.Equal(CaOrigin.PlugIn, origin);
        Assert.Equal(intermediate.Thumbprint, ca.SigningCertificate.Thumbprint);
        Assert.Equal([root.Thumbprint], ca.Bundle.Roots.Select(r => r.Thumbprint));
        Assert.Equal([intermediate.Thumbprint], ca.ChainAfterLeaf.Select(c => c.Thumbprint));
        Assert.Equal(ca.Bundle.ToPem(), File.ReadAllText(store.BundleLocation));
        Assert.Equal("Secret ztm-system/mesh-ca", store.Location);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = ca.IssueSvid(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders"), new PublicKey(key), TimeSpan.FromHours(1));
        Assert.True(Chains(leaf, ca.Bundle.Roots, intermediate));
        Assert.DoesNotContain(_api.Requests, r => r.Method is "POST" or "PUT" or "PATCH");
    }

    [Theory]
    [InlineData("tls.key", "Secret ztm-system/ztm-ca has no 'tls.key' (it needs tls.crt, tls.key and ca.crt, as cert-manager writes them)")]
    [InlineData("not-a-ca", "Secret ztm-system/ztm-ca: tls.crt is not a CA certificate (it needs cA=true and keyCertSign; with cert-manager, isCA: true)")]
    public void A_secret_that_holds_no_usable_CA_is_refused_with_what_is_wrong(string flaw, string error)
    {
        using var root = CreateCa("Operator Root", issuer: null, isCa: flaw != "not-a-ca");
        {
            var data = new Dictionary<string, byte[]>
            {
                ["tls.crt"] = Encoding.ASCII.GetBytes(root.ExportCertificatePem()),
                ["tls.key"] = Encoding.ASCII.GetBytes(Pem.PrivateKeyPem(root)),
                ["ca.crt"] = Encoding.ASCII.GetBytes(root.ExportCertificatePem()),
            };
            data.Remove(flaw);
            _api.Seed(new V1Secret { ApiVersion = "v1", Kind = "Secret", Metadata = new V1ObjectMeta { Name = "ztm-ca", NamespaceProperty = Namespace }, Type = "kubernetes.io/tls", Data = data });
        }

        var refused = Assert.Throws<InvalidDataException>(() => Store("a").LoadOrCreate());
        Assert.Equal(error, refused.Message);
    }

    [Fact]
    public void An_api_server_that_refuses_is_an_IOException_naming_the_secret_and_the_answer()
    {
        _api.Fail(r => r.Path.Value!.Contains("/secrets", StringComparison.Ordinal), 1, 403, "Forbidden");

        var refused = Assert.Throws<IOException>(() => Store("a").LoadOrCreate());
        Assert.StartsWith("cannot read Secret ztm-system/ztm-ca: the API answered 403 Forbidden", refused.Message, StringComparison.Ordinal);
    }

    private SecretCaStore Store(string replica, string secret = "ztm-ca")
    {
        var options = ControlPlaneParts.Options(Path.Combine(_dir, replica));
        return new SecretCaStore(_api.CreateClient(), Namespace, new ControlPlaneOptions
        {
            DataDir = options.DataDir,
            ListenAddress = options.ListenAddress,
            Port = 0,
            TrustDomain = options.TrustDomain,
            SvidTtl = options.SvidTtl,
            JoinTokenTtl = options.JoinTokenTtl,
            OperatorConfigPath = options.OperatorConfigPath,
            CaSecret = secret,
        }, TimeProvider.System);
    }

    /// <summary>A CA certificate with its key: self-signed, or signed by <paramref name="issuer"/> (which has its key).</summary>
    private static X509Certificate2 CreateCa(string name, X509Certificate2? issuer, bool isCa = true)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(isCa, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(isCa ? X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign : X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        if (issuer is null)
        {
            return request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(30));
        }
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
        using var signed = request.Create(issuer, now.AddMinutes(-5), now.AddDays(30), RandomNumberGenerator.GetBytes(8));
        return signed.CopyWithPrivateKey(key);
    }

    private static bool Chains(X509Certificate2 leaf, IEnumerable<X509Certificate2> roots, params X509Certificate2[] intermediates)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots.ToArray());
        chain.ChainPolicy.ExtraStore.AddRange(intermediates);
        return chain.Build(leaf);
    }
}
