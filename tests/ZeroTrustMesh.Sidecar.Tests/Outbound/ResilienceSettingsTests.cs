using ZeroTrustMesh.Sidecar.Outbound;

namespace ZeroTrustMesh.Sidecar.Tests.Outbound;

public sealed class ResilienceSettingsTests
{
    [Fact]
    public void Keys_given_override_the_defaults_and_the_rest_keep_them()
    {
        Assert.True(ResilienceSettings.TryParse("orders.shop:retries=0,connect-timeout=500ms,ejection-time=1m", ResilienceSettings.Default, out var service, out var settings, out _));
        Assert.Equal("orders.shop", service);
        Assert.Equal(0, settings.Retries);
        Assert.Equal(TimeSpan.FromMilliseconds(500), settings.ConnectTimeout);
        Assert.Equal(TimeSpan.FromMinutes(1), settings.EjectionTime);
        Assert.Equal(ResilienceSettings.Default.RequestTimeout, settings.RequestTimeout);
    }

    [Theory]
    [InlineData("orders", "SERVICE:key=value")]
    [InlineData("orders:retries=eleven", "retries=eleven")]
    [InlineData("orders:retries=11", "retries=11")]
    [InlineData("orders:timeout=1s", "timeout=1s")]
    [InlineData("orders:connect-timeout=-1s", "connect-timeout=-1s")]
    public void Nonsense_is_refused_with_the_offending_part(string text, string named)
    {
        Assert.False(ResilienceSettings.TryParse(text, ResilienceSettings.Default, out _, out _, out var error));
        Assert.Contains(named, error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_destination_is_found_by_full_or_short_name_else_the_defaults_apply()
    {
        var ordersSettings = ResilienceSettings.Default with { Retries = 0 };
        var options = new SidecarOptions
        {
            ControlPlane = new Uri("https://127.0.0.1:1"),
            BootstrapBundle = null!,
            Proof = new ZeroTrustMesh.Sidecar.Identity.IdentityProof.JoinToken("t"),
            AdminPort = 0,
            InboundEndpoint = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0),
            OutboundPort = 0,
            AppPorts = [],
            TcpPorts = [],
            DestinationResilience = new Dictionary<string, ResilienceSettings> { ["orders"] = ordersSettings },
        };
        Assert.Same(ordersSettings, options.ResilienceFor("orders.shop"));
        Assert.Same(ResilienceSettings.Default, options.ResilienceFor("payments.shop"));
    }
}
