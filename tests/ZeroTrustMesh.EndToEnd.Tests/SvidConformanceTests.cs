using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>A control plane that issues 5-minute SVIDs, shared by <see cref="SvidConformanceTests"/>.</summary>
public sealed class SvidConformanceFixture : ControlPlaneFixture
{
    public static readonly TimeSpan SvidTtl = TimeSpan.FromMinutes(5);

    protected override IEnumerable<string> Arguments => ["--svid-ttl", "5m"];
}

/// <summary>
/// Certificates issued by the real control plane follow the SPIFFE X.509-SVID specification, chain to the
/// trust bundle it publishes, survive a restart, and a plug-in intermediate CA chains up to the operator's root.
/// </summary>
public sealed class SvidConformanceTests : IClassFixture<SvidConformanceFixture>
{
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private const string ServerAuth = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuth = "1.3.6.1.5.5.7.3.2";

    private readonly ControlPlane _controlPlane;
    private readonly ITestOutputHelper _output;

    public SvidConformanceTests(SvidConformanceFixture fixture, ITestOutputHelper output)
    {
        fixture.AttachOutput(output);
        _controlPlane = fixture.ControlPlane;
        _output = output;
    }

    [Fact]
    public async Task Leaf_has_exactly_one_uri_san_the_proven_spiffe_id_and_no_other_name()
    {
        var issued = await IssueAsync();

        var names = SubjectAltNames.From(issued.Leaf.Extensions.Cast<X509Extension>());
        Assert.Equal([Orders], names.Uris);
        Assert.Equal(0, names.OtherNames);
        Assert.Single(issued.Leaf.Extensions, e => e.Oid?.Value == SubjectAltNames.Oid);
        Assert.Equal(Orders, issued.Response.SpiffeId);
    }

    [Fact]
    public async Task Leaf_is_not_a_ca_and_its_critical_key_usage_is_digital_signature_only()
    {
        var issued = await IssueAsync();

        var basic = Assert.Single(issued.Leaf.Extensions.OfType<X509BasicConstraintsExtension>());
        Assert.False(basic.CertificateAuthority);
        var usage = Assert.Single(issued.Leaf.Extensions.OfType<X509KeyUsageExtension>());
        Assert.True(usage.Critical);
        Assert.True(usage.KeyUsages.HasFlag(X509KeyUsageFlags.DigitalSignature));
        Assert.False(usage.KeyUsages.HasFlag(X509KeyUsageFlags.KeyCertSign));
        Assert.False(usage.KeyUsages.HasFlag(X509KeyUsageFlags.CrlSign));
        Assert.False(usage.KeyUsages.HasFlag(X509KeyUsageFlags.KeyEncipherment)); // an EC key cannot encipher keys
        Assert.Equal(X509KeyUsageFlags.DigitalSignature, usage.KeyUsages);
    }

    [Fact]
    public async Task Rsa_leaf_adds_key_encipherment_and_still_no_ca_usages()
    {
        using var key = RSA.Create(2048);
        var csr = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1).CreateSigningRequest();
        var response = await WorkloadCredential.SignAsync(_controlPlane, csr, await _controlPlane.MintTokenAsync());
        using var leaf = X509CertificateLoader.LoadCertificate(response.CertificateChain[0].Span);

        var usage = Assert.Single(leaf.Extensions.OfType<X509KeyUsageExtension>());
        Assert.True(usage.Critical);
        Assert.Equal(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, usage.KeyUsages);
    }

    [Fact]
    public async Task Leaf_is_for_server_and_client_authentication()
    {
        var issued = await IssueAsync();

        var eku = Assert.Single(issued.Leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>());
        var oids = eku.EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value).ToList();
        Assert.Contains(ServerAuth, oids);
        Assert.Contains(ClientAuth, oids);
    }

    [Fact]
    public async Task Serial_is_positive_random_and_at_least_8_bytes()
    {
        var first = await IssueAsync();
        var second = await IssueAsync();

        foreach (var issued in new[] { first, second })
        {
            var serial = issued.Leaf.SerialNumberBytes.Span; // big-endian, as encoded
            Assert.True(serial.Length >= 8, $"serial {issued.Leaf.SerialNumber} has {serial.Length} bytes");
            Assert.True(serial[0] < 0x80, $"serial {issued.Leaf.SerialNumber} is negative");
            Assert.True(serial.ToArray().Any(b => b != 0), "serial is zero");
            Assert.Equal(issued.Leaf.SerialNumber.ToLowerInvariant(), issued.Response.SerialNumber);
        }
        Assert.NotEqual(first.Leaf.SerialNumber, second.Leaf.SerialNumber);
    }

    [Fact]
    public async Task Not_before_is_backdated_by_at_most_a_minute_and_not_after_is_the_configured_svid_ttl()
    {
        var issued = await IssueAsync();

        var notBefore = new DateTimeOffset(issued.Leaf.NotBefore.ToUniversalTime());
        var notAfter = new DateTimeOffset(issued.Leaf.NotAfter.ToUniversalTime());
        Assert.True(notBefore < issued.RequestedAt, $"notBefore {notBefore:O} is not before the request at {issued.RequestedAt:O}");
        Assert.True(issued.RequestedAt - notBefore <= TimeSpan.FromMinutes(1), $"notBefore {notBefore:O} is backdated more than a minute");
        // X.509 times have whole seconds: allow one second of truncation below.
        Assert.InRange(notAfter, issued.RequestedAt + SvidConformanceFixture.SvidTtl - TimeSpan.FromSeconds(1), issued.AnsweredAt + SvidConformanceFixture.SvidTtl);
        Assert.Equal(notAfter, issued.Response.ExpiresAt.ToDateTimeOffset());
    }

    [Fact]
    public async Task Chain_verifies_against_bundle_pem_and_the_response_bundle_equals_bundle_pem()
    {
        var issued = await IssueAsync();
        var bundlePem = new X509Certificate2Collection();
        bundlePem.ImportFromPemFile(_controlPlane.BundlePath);

        // The control plane's own CA signs directly: the chain is the leaf alone (never the root).
        Assert.Single(issued.Response.CertificateChain);
        var chain = BuildChain(issued.Leaf, issued.Response, bundlePem);
        Assert.Equal(bundlePem[0].Thumbprint, chain[^1].Thumbprint);

        Assert.Equal("cluster.local", issued.Response.TrustBundle.TrustDomain);
        Assert.Equal(bundlePem.Select(c => Convert.ToHexString(c.RawData)), issued.Response.TrustBundle.Roots.Select(r => Convert.ToHexString(r.Span)));
        Assert.True(SvidVerifier.Verify(issued.Leaf, [], _controlPlane.Bundle, DateTimeOffset.UtcNow).IsValid);
    }

    [Fact]
    public void Bundle_root_is_a_ca_with_key_cert_sign_and_a_uri_san_without_path()
    {
        var bundle = new X509Certificate2Collection();
        bundle.ImportFromPemFile(_controlPlane.BundlePath);
        var root = Assert.Single(bundle);

        Assert.True(Assert.Single(root.Extensions.OfType<X509BasicConstraintsExtension>()).CertificateAuthority);
        Assert.True(Assert.Single(root.Extensions.OfType<X509KeyUsageExtension>()).KeyUsages.HasFlag(X509KeyUsageFlags.KeyCertSign));
        foreach (var uri in SubjectAltNames.From(root.Extensions.Cast<X509Extension>()).Uris)
        {
            Assert.True(SpiffeId.TryParse(uri, out var id), $"root URI SAN '{uri}' is not a SPIFFE ID");
            Assert.Equal("", id.Path);
            Assert.Equal("cluster.local", id.TrustDomain);
        }
    }

    [Fact]
    public async Task Restart_with_the_same_data_dir_keeps_the_bundle_and_the_operator_credential()
    {
        await using var mesh = new TestMesh(_output);
        var dataDir = Path.Combine(mesh.Root, "restarted");
        var first = await mesh.StartControlPlaneAsync("controlplane-1", dataDir);
        var bundleBefore = await File.ReadAllTextAsync(first.BundlePath);
        using var operatorBefore = first.OperatorCertificate;
        await first.Process.StopAsync();
        Assert.Equal(0, await first.Process.Exited);

        var second = await mesh.StartControlPlaneAsync("controlplane-2", dataDir);
        await second.Process.WaitForLineAsync("ztm-controlplane: CA loaded in ");

        Assert.Equal(bundleBefore, await File.ReadAllTextAsync(second.BundlePath));
        CreateJoinTokenResponse token;
        using (var asOperator = second.Channel(operatorBefore))
        {
            token = await new IdentityAdmin.IdentityAdminClient(asOperator).CreateJoinTokenAsync(
                new CreateJoinTokenRequest { Namespace = "shop", ServiceAccount = "orders" });
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var response = await WorkloadCredential.SignAsync(second, WorkloadCredential.Csr(key), token.Token);
        using var leaf = X509CertificateLoader.LoadCertificate(response.CertificateChain[0].Span);
        var bundle = new X509Certificate2Collection();
        bundle.ImportFromPem(bundleBefore);
        BuildChain(leaf, response, bundle);
    }

    [Fact]
    public async Task Plug_in_intermediate_ca_issues_svids_that_chain_leaf_intermediate_root()
    {
        await using var mesh = new TestMesh(_output);
        using var root = TestCertificates.CreateCa("Operator Root");
        using var intermediate = TestCertificates.CreateCa("Operator Intermediate", root);
        var (rootPem, _) = TestCertificates.WritePem(X509CertificateLoader.LoadCertificate(root.RawData), mesh.Root, "root");
        var (intermediatePem, intermediateKey) = TestCertificates.WritePem(intermediate, mesh.Root, "intermediate");

        var controlPlane = await mesh.StartControlPlaneAsync("plugin", null, 0,
            "--ca-cert", intermediatePem, "--ca-key", intermediateKey, "--ca-bundle", rootPem);
        await controlPlane.Process.WaitForLineAsync("ztm-controlplane: CA plugin in ");

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var response = await WorkloadCredential.SignAsync(controlPlane, WorkloadCredential.Csr(key), await controlPlane.MintTokenAsync());
        using var leaf = X509CertificateLoader.LoadCertificate(response.CertificateChain[0].Span);

        Assert.Equal(2, response.CertificateChain.Count);
        Assert.Equal(intermediate.RawData, response.CertificateChain[1].ToByteArray());
        Assert.Equal([Convert.ToHexString(root.RawData)], response.TrustBundle.Roots.Select(r => Convert.ToHexString(r.Span)));
        var bundlePem = new X509Certificate2Collection();
        bundlePem.ImportFromPemFile(controlPlane.BundlePath);
        Assert.Equal(root.RawData, Assert.Single(bundlePem).RawData);

        var chain = BuildChain(leaf, response, [X509CertificateLoader.LoadCertificate(root.RawData)]);
        Assert.Equal([leaf.Thumbprint, intermediate.Thumbprint, root.Thumbprint], chain.Select(c => c.Thumbprint));
        Assert.Equal(Orders, Assert.Single(SubjectAltNames.From(leaf.Extensions.Cast<X509Extension>()).Uris));
    }

    private async Task<Issued> IssueAsync()
    {
        var token = await _controlPlane.MintTokenAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = WorkloadCredential.Csr(key, Orders);
        var requestedAt = DateTimeOffset.UtcNow;
        var response = await WorkloadCredential.SignAsync(_controlPlane, csr, token);
        var answeredAt = DateTimeOffset.UtcNow;
        var leaf = X509CertificateLoader.LoadCertificate(response.CertificateChain[0].Span);
        // The certificate is over the key the CSR carried, and only that.
        Assert.Equal(key.ExportSubjectPublicKeyInfo(), leaf.PublicKey.ExportSubjectPublicKeyInfo());
        return new Issued(response, leaf, requestedAt, answeredAt);
    }

    /// <summary>Builds leaf → intermediates (from the response) → one of <paramref name="roots"/>, trusting only those roots.</summary>
    private static List<X509Certificate2> BuildChain(X509Certificate2 leaf, SignCertificateResponse response, X509Certificate2Collection roots)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.ExtraStore.AddRange(response.CertificateChain.Skip(1).Select(c => X509CertificateLoader.LoadCertificate(c.Span)).ToArray());
        var built = chain.Build(leaf);
        Assert.True(built, $"chain does not verify: {string.Join(", ", chain.ChainStatus.Select(s => $"{s.Status} {s.StatusInformation}"))}");
        return [.. chain.ChainElements.Select(e => e.Certificate)];
    }

    private sealed record Issued(SignCertificateResponse Response, X509Certificate2 Leaf, DateTimeOffset RequestedAt, DateTimeOffset AnsweredAt);
}
