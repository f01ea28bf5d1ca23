using System.Net;
using Polly;
using Polly.CircuitBreaker;
using ZeroTrustMesh.Sidecar.Outbound;

namespace ZeroTrustMesh.Sidecar.Tests.Outbound;

/// <summary>Which HTTP version a request travels in between sidecars, for each <c>--peer-protocol</c>.</summary>
public sealed class PeerProtocolTests
{
    [Theory]
    [InlineData("h2", "HTTP/1.1", "2.0")]
    [InlineData("h2", "HTTP/2", "2.0")]
    [InlineData("match", "HTTP/1.1", "1.1")]
    [InlineData("match", "HTTP/1.0", "1.1")]
    [InlineData("match", "HTTP/2", "2.0")]
    public void An_http1_request_goes_as_http1_only_with_match_and_http2_always_as_http2(string peer, string appProtocol, string expected)
    {
        var protocol = Enum.Parse<PeerProtocol>(peer, ignoreCase: true);
        using var invoker = new HttpMessageInvoker(new SocketsHttpHandler());
        var client = new DestinationClient(invoker, ResiliencePipeline<ForwardResult>.Empty, new CircuitBreakerStateProvider(), ResilienceSettings.Default, protocol);

        var forwarding = client.ForwardingFor(appProtocol);

        Assert.Equal(Version.Parse(expected), forwarding.Version);
        Assert.Equal(HttpVersionPolicy.RequestVersionExact, forwarding.VersionPolicy);
        Assert.Equal(ResilienceSettings.Default.RequestTimeout, forwarding.ActivityTimeout);
    }
}
