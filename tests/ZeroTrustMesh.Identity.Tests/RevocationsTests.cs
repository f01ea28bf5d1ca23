using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using static ZeroTrustMesh.Identity.Tests.SvidVerifierTests;

namespace ZeroTrustMesh.Identity.Tests;

/// <summary>The revocation list as the sidecar's handshake and the CA's renewal consult it.</summary>
public sealed class RevocationsTests : IDisposable
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");
    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly X509Certificate2 _ca;
    private readonly TrustBundle _bundle;

    public RevocationsTests()
    {
        _ca = MakeCa(_caKey, "CN=test CA");
        _bundle = new TrustBundle("cluster.local", [_ca], 1);
    }

    public void Dispose()
    {
        _caKey.Dispose();
        _ca.Dispose();
    }

    [Theory]
    [InlineData("45d3ab", "45d3ab")]
    [InlineData("0045D3AB", "45d3ab")]
    [InlineData("00:45:d3:ab", "45d3ab")]
    [InlineData("0x45d3ab", "45d3ab")]
    [InlineData("00", "0")]
    public void Serials_are_compared_as_numbers_in_lowercase_hex(string input, string expected)
    {
        Assert.True(Revocation.TryNormalizeSerial(input, out var serial, out var error), error);
        Assert.Equal(expected, serial);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("45g3", "is not a certificate serial")]
    [InlineData("spiffe://cluster.local/ns/shop/sa/orders", "is not a certificate serial")]
    [InlineData("1234567890123456789012345678901234567890ab", "longer than a certificate serial")]
    public void Malformed_serials_are_refused_with_the_reason(string input, string message)
    {
        Assert.False(Revocation.TryNormalizeSerial(input, out _, out var error));
        Assert.Contains(message, error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_revoked_serial_fails_verification_with_reason_Revoked_and_others_still_verify()
    {
        using var revoked = Leaf(_ca, _caKey, [Orders.Value]);
        using var other = Leaf(_ca, _caKey, [Orders.Value]);
        var list = RevocationList.Empty.With(Revocation.ForSerial(revoked.SerialNumber, Now, Now.AddHours(1), "key leaked"));

        var result = SvidVerifier.Verify(revoked, null, _bundle, Now, list);

        Assert.Equal(SvidFailure.Revoked, result.Failure);
        Assert.Contains("is revoked", result.Reason, StringComparison.Ordinal);
        Assert.Contains("key leaked", result.Reason, StringComparison.Ordinal);
        Assert.True(SvidVerifier.Verify(other, null, _bundle, Now, list).IsValid);
        Assert.True(SvidVerifier.Verify(revoked, null, _bundle, Now).IsValid); // without the list: as before
    }

    [Fact]
    public void A_revoked_identity_covers_certificates_issued_before_the_revocation_not_after()
    {
        using var leaf = Leaf(_ca, _caKey, [Orders.Value]);
        var issuedAt = leaf.NotBefore.ToUniversalTime() + Revocation.IssuanceBackdate;

        var after = RevocationList.Empty.With(Revocation.ForIdentity(Orders, issuedAt.AddSeconds(1), Now.AddDays(1), ""));
        var before = RevocationList.Empty.With(Revocation.ForIdentity(Orders, issuedAt.AddSeconds(-1), Now.AddDays(1), ""));
        var otherId = RevocationList.Empty.With(Revocation.ForIdentity(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/payments"), Now, Now.AddDays(1), ""));

        Assert.Equal(SvidFailure.Revoked, SvidVerifier.Verify(leaf, null, _bundle, Now, after).Failure);
        Assert.True(SvidVerifier.Verify(leaf, null, _bundle, Now, before).IsValid);
        Assert.True(SvidVerifier.Verify(leaf, null, _bundle, Now, otherId).IsValid);
    }

    [Fact]
    public void Revoking_an_identity_again_keeps_the_later_cut_off_and_a_serial_is_listed_once()
    {
        var first = Revocation.ForIdentity(Orders, Now, Now.AddDays(1), "");
        var later = Revocation.ForIdentity(Orders, Now.AddMinutes(5), Now.AddDays(1), "");
        var list = RevocationList.Empty.With(first).With(later);
        Assert.Equal(later, Assert.Single(list.Entries));
        Assert.Same(list, list.With(first));

        var serials = RevocationList.Empty.With(Revocation.ForSerial("ab", Now, Now.AddHours(1), ""));
        Assert.Same(serials, serials.With(Revocation.ForSerial("00AB", Now, Now.AddHours(1), "")));
    }

    [Fact]
    public void Prune_drops_exactly_the_entries_whose_certificates_have_all_expired()
    {
        var list = new RevocationList([
            Revocation.ForSerial("01", Now, Now.AddHours(1), ""),
            Revocation.ForIdentity(Orders, Now, Now.AddHours(24), ""),
        ]);
        Assert.Same(list, list.Prune(Now.AddMinutes(59), out var none));
        Assert.Empty(none);

        var pruned = list.Prune(Now.AddHours(1), out var dropped);

        Assert.Equal("1", Assert.Single(dropped).Serial); // normalized: no leading zeros
        Assert.Equal(Orders, Assert.Single(pruned.Entries).Id);
        Assert.Equal(Now.AddHours(24), pruned.NextExpiry);
    }
}
