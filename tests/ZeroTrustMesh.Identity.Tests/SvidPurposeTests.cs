using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.Identity.Tests;

/// <summary>
/// Extended key usage against what the certificate is presented for: a client certificate needs clientAuth, a server
/// certificate serverAuth, whenever the leaf has the extension at all.
/// </summary>
public sealed class SvidPurposeTests : IDisposable
{
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");

    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly X509Certificate2 _ca;
    private readonly TrustBundle _bundle;

    public SvidPurposeTests()
    {
        _ca = SvidVerifierTests.MakeCa(_caKey, "CN=test CA");
        _bundle = new TrustBundle("cluster.local", [_ca], 1);
    }

    public void Dispose()
    {
        _caKey.Dispose();
        _ca.Dispose();
    }

    [Fact]
    public void A_server_auth_only_leaf_is_refused_as_a_client_certificate_and_accepted_as_a_server_certificate()
    {
        using var leaf = Leaf(ServerAuth);

        var asClient = SvidVerifier.Verify(leaf, null, _bundle, Now, purpose: SvidPurpose.Client);
        Assert.Equal(SvidFailure.BadExtendedKeyUsage, asClient.Failure);
        Assert.Equal("its extended key usage (serverAuth) does not allow client authentication (clientAuth)", asClient.Reason);
        Assert.True(SvidVerifier.Verify(leaf, null, _bundle, Now, purpose: SvidPurpose.Server).IsValid);
    }

    [Fact]
    public void A_client_auth_only_leaf_is_refused_as_a_server_certificate()
    {
        using var leaf = Leaf(ClientAuth);

        var asServer = SvidVerifier.Verify(leaf, null, _bundle, Now, purpose: SvidPurpose.Server);
        Assert.Equal(SvidFailure.BadExtendedKeyUsage, asServer.Failure);
        Assert.Contains("does not allow server authentication", asServer.Reason, StringComparison.Ordinal);
        Assert.True(SvidVerifier.Verify(leaf, null, _bundle, Now, purpose: SvidPurpose.Client).IsValid);
    }

    [Fact]
    public void Both_purposes_need_both_usages()
    {
        using var both = Leaf(ServerAuth, ClientAuth);
        using var serverOnly = Leaf(ServerAuth);

        Assert.True(SvidVerifier.Verify(both, null, _bundle, Now, purpose: SvidPurpose.Client | SvidPurpose.Server).IsValid);
        Assert.Equal(SvidFailure.BadExtendedKeyUsage, SvidVerifier.Verify(serverOnly, null, _bundle, Now, purpose: SvidPurpose.Client | SvidPurpose.Server).Failure);
    }

    [Fact]
    public void An_eku_of_another_purpose_only_is_refused_for_either()
    {
        using var codeSigning = Leaf(new Oid("1.3.6.1.5.5.7.3.3"));

        var result = SvidVerifier.Verify(codeSigning, null, _bundle, Now, purpose: SvidPurpose.Client);
        Assert.Equal(SvidFailure.BadExtendedKeyUsage, result.Failure);
        Assert.Contains("(1.3.6.1.5.5.7.3.3)", result.Reason, StringComparison.Ordinal);
        Assert.Equal(SvidFailure.BadExtendedKeyUsage, SvidVerifier.Verify(codeSigning, null, _bundle, Now, purpose: SvidPurpose.Server).Failure);
    }

    [Fact]
    public void Any_extended_key_usage_allows_every_purpose()
    {
        using var any = Leaf(new Oid("2.5.29.37.0"));

        Assert.True(SvidVerifier.Verify(any, null, _bundle, Now, purpose: SvidPurpose.Client | SvidPurpose.Server).IsValid);
    }

    [Fact]
    public void Without_the_extension_no_purpose_is_allowed()
    {
        using var none = SvidVerifierTests.Leaf(_ca, _caKey, [Orders]);

        var client = SvidVerifier.Verify(none, null, _bundle, Now, purpose: SvidPurpose.Client);
        Assert.Equal(SvidFailure.BadExtendedKeyUsage, client.Failure);
        Assert.Contains("has no extended key usage", client.Reason, StringComparison.Ordinal);
        Assert.Equal(SvidFailure.BadExtendedKeyUsage, SvidVerifier.Verify(none, null, _bundle, Now, purpose: SvidPurpose.Server).Failure);
        Assert.True(SvidVerifier.Verify(none, null, _bundle, Now).IsValid); // no purpose asked: identity only
    }

    [Fact]
    public void Without_a_purpose_the_extended_key_usage_is_not_looked_at()
    {
        using var serverOnly = Leaf(ServerAuth);

        Assert.True(SvidVerifier.Verify(serverOnly, null, _bundle, Now).IsValid);
    }

    [Fact]
    public void A_critical_eku_still_takes_the_fast_path_and_is_checked()
    {
        using var leaf = SvidVerifierTests.Leaf(_ca, _caKey, [Orders], extra: new X509EnhancedKeyUsageExtension([ServerAuth], critical: true));

        Assert.Equal(SvidFailure.BadExtendedKeyUsage, SvidVerifier.Verify(leaf, null, _bundle, Now, purpose: SvidPurpose.Client).Failure);
        Assert.True(SvidVerifier.Verify(leaf, null, _bundle, Now, purpose: SvidPurpose.Server).IsValid);
    }

    private X509Certificate2 Leaf(params Oid[] usages)
    {
        var collection = new OidCollection();
        foreach (var usage in usages)
        {
            collection.Add(usage);
        }
        return SvidVerifierTests.Leaf(_ca, _caKey, [Orders], extra: new X509EnhancedKeyUsageExtension(collection, critical: false));
    }
}
