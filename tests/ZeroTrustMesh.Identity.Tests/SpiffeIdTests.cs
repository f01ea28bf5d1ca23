using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Identity.Tests;

public sealed class SpiffeIdTests
{
    [Theory]
    [InlineData("spiffe://cluster.local/ns/shop/sa/orders", "cluster.local", "/ns/shop/sa/orders")]
    [InlineData("spiffe://example.org", "example.org", "")]
    [InlineData("spiffe://a-b_c.9/Path.With-All_Chars/09", "a-b_c.9", "/Path.With-All_Chars/09")]
    [InlineData("spiffe://td/...", "td", "/...")]
    public void Valid_ids_parse_into_trust_domain_and_path(string value, string trustDomain, string path)
    {
        var id = SpiffeId.Parse(value);
        Assert.Equal(trustDomain, id.TrustDomain);
        Assert.Equal(path, id.Path);
        Assert.Equal(value, id.ToString());
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("http://cluster.local/ns/a", "scheme")]
    [InlineData("SPIFFE://cluster.local/ns/a", "scheme")]
    [InlineData("spiffe:/cluster.local", "scheme")]
    [InlineData("spiffe://", "trust domain is missing")]
    [InlineData("spiffe:///ns/a", "trust domain is missing")]
    [InlineData("spiffe://Cluster.local/ns/a", "lowercase")]
    [InlineData("spiffe://cluster.local:8080/ns/a", "port")]
    [InlineData("spiffe://user@cluster.local/ns/a", "userinfo")]
    [InlineData("spiffe://cluster.local/ns/a?x=1", "query")]
    [InlineData("spiffe://cluster.local/ns/a#frag", "fragment")]
    [InlineData("spiffe://cluster.local?x", "query")]
    [InlineData("spiffe://cluster.local/", "trailing slash")]
    [InlineData("spiffe://cluster.local//ns", "empty segment")]
    [InlineData("spiffe://cluster.local/ns/./a", "'.' or '..'")]
    [InlineData("spiffe://cluster.local/ns/../a", "'.' or '..'")]
    [InlineData("spiffe://cluster.local/ns/a%20b", "percent-encoding")]
    [InlineData("spiffe://cluster.local/ns/a b", "only a-z")]
    [InlineData("spiffe://clu$ter.local/ns/a", "only a-z")]
    public void Invalid_ids_are_refused_with_the_reason(string value, string reason)
    {
        Assert.False(SpiffeId.TryParse(value, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
        var e = Assert.Throws<FormatException>(() => SpiffeId.Parse(value));
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Length_limits_are_enforced()
    {
        var longDomain = new string('a', 256);
        Assert.False(SpiffeId.TryParse($"spiffe://{longDomain}/x", out _, out var error));
        Assert.Contains("255", error, StringComparison.Ordinal);
        Assert.True(SpiffeId.TryParse($"spiffe://{new string('a', 255)}/x", out _));

        var longPath = "spiffe://td/" + new string('p', SpiffeId.MaxLength);
        Assert.False(SpiffeId.TryParse(longPath, out _, out error));
        Assert.Contains("2048", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Workload_ids_expose_namespace_and_service_account()
    {
        var id = SpiffeId.ForWorkload("cluster.local", "shop", "orders");
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/orders", id.Value);
        Assert.True(id.TryGetWorkload(out var ns, out var sa));
        Assert.Equal(("shop", "orders"), (ns, sa));

        Assert.False(SpiffeId.ForMesh("cluster.local", "operator").TryGetWorkload(out _, out _));
        Assert.False(SpiffeId.Parse("spiffe://td/ns/shop/sa/orders/extra").TryGetWorkload(out _, out _));
        Assert.Throws<FormatException>(() => SpiffeId.ForWorkload("cluster.local", "a/../b", "x"));
    }

    [Fact]
    public void Equality_is_ordinal_on_the_whole_id()
    {
        Assert.Equal(SpiffeId.Parse("spiffe://td/a"), SpiffeId.Parse("spiffe://td/a"));
        Assert.NotEqual(SpiffeId.Parse("spiffe://td/a"), SpiffeId.Parse("spiffe://td/A"));
        Assert.True(default(SpiffeId).IsEmpty);
    }
}
