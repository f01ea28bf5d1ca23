using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using Polly;
using Polly.CircuitBreaker;
using Yarp.ReverseProxy.Forwarder;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Registry;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Outbound;

/// <summary>
/// YARP's outcome of one forwarding attempt. A struct around the enum, because Polly over an enum result type
/// instantiates code that NativeAOT cannot compile (Enum.GetValues(Type)).
/// </summary>
internal readonly record struct ForwardResult(ForwarderError Error)
{
    /// <summary>Counts against the endpoint: it could not be reached or did not answer in time.</summary>
    public bool IsEndpointFailure => Error is ForwarderError.Request or ForwarderError.RequestTimedOut;
}

/// <summary>Which HTTP version one sidecar speaks to another (<c>--peer-protocol</c>).</summary>
internal enum PeerProtocol
{
    /// <summary>Every request multiplexed over HTTP/2.</summary>
    H2,

    /// <summary>
    /// The calling app's version: HTTP/1.x requests on pooled HTTP/1.1 mTLS connections (no HPACK, frames or flow
    /// control to pay for), HTTP/2 and gRPC multiplexed over HTTP/2.
    /// </summary>
    Match,
}

/// <summary>What the outbound path keeps per destination endpoint: its mTLS client and its circuit breaker.</summary>
internal sealed class DestinationClient(HttpMessageInvoker invoker, ResiliencePipeline<ForwardResult> breaker, CircuitBreakerStateProvider state, ResilienceSettings settings, PeerProtocol peerProtocol)
{
    public ResilienceSettings Settings { get; } = settings;

    /// <summary>HTTP/2 only, with the destination's request idle timeout.</summary>
    private readonly ForwarderRequestConfig _http2 = new()
    {
        Version = System.Net.HttpVersion.Version20,
        VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        ActivityTimeout = settings.RequestTimeout,
    };

    /// <summary>HTTP/1.1 only (one request at a time per pooled connection), with the same timeout.</summary>
    private readonly ForwarderRequestConfig _http11 = new()
    {
        Version = System.Net.HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        ActivityTimeout = settings.RequestTimeout,
    };

    /// <summary>
    /// How YARP forwards a request the app sent in <paramref name="protocol"/> to this endpoint. One handler serves both
    /// versions: its pool offers ALPN h2 for HTTP/2 and no ALPN for HTTP/1.1, and the inbound side reads either.
    /// </summary>
    public ForwarderRequestConfig ForwardingFor(string protocol) =>
        peerProtocol == PeerProtocol.Match && (HttpProtocol.IsHttp11(protocol) || HttpProtocol.IsHttp10(protocol)) ? _http11 : _http2;

    public HttpMessageInvoker Invoker { get; } = invoker;

    /// <summary>Opens after repeated connect failures or timeouts: the endpoint is ejected until a trial request succeeds.</summary>
    public ResiliencePipeline<ForwardResult> Breaker { get; } = breaker;

    public bool IsEjected => state.CircuitState is CircuitState.Open or CircuitState.Isolated;
}

/// <summary>
/// One <see cref="DestinationClient"/> per (endpoint, identity), created on first use. Each client's connections
/// verify that the server is exactly the identity the registry gave for that endpoint, and carry requests over HTTP/2
/// (or HTTP/1.1, see <see cref="PeerProtocol"/>). Endpoints are picked round-robin among those not ejected.
/// </summary>
internal sealed class DestinationClients(IdentityState state, SidecarOptions options, SidecarMetrics metrics, RefusalLog refusals)
{
    /// <summary>
    /// How much of one HTTP/2 response the sidecar's clients accept ahead of the reader (the stream's flow-control
    /// window): a fixed 1 MiB, with dynamic window sizing off (runtimeconfig), which would let a slow reader's stream
    /// buffer up to 16 MiB. 1 MiB in flight still carries over 1 GB/s per stream at in-cluster round trips (&lt; 1 ms).
    /// </summary>
    public const int Http2StreamWindow = 1024 * 1024;

    /// <summary>
    /// A client that forwards requests as they are, for both legs: to other sidecars and to the local app. It sends what
    /// the caller sent (no proxy, redirects, cookies or decompression) and passes the caller's traceparent through.
    /// </summary>
    public static SocketsHttpHandler ForwardingHandler(TimeSpan connectTimeout) => new()
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        EnableMultipleHttp2Connections = true,
        InitialHttp2StreamWindowSize = Http2StreamWindow,
        ActivityHeadersPropagator = null,
        ConnectTimeout = connectTimeout,
    };

    private readonly ConcurrentDictionary<(IPEndPoint, string), DestinationClient> _clients = new();
    private int _next;

    /// <summary>The next endpoint to try, skipping ejected ones and those in <paramref name="tried"/>; null if none is left.</summary>
    public (Destination Destination, DestinationClient Client)? Pick(IReadOnlyList<Destination> destinations, ICollection<Destination>? tried = null)
    {
        var start = Interlocked.Increment(ref _next);
        for (var i = 0; i < destinations.Count; i++)
        {
            var destination = destinations[(int)((uint)(start + i) % destinations.Count)];
            var client = For(destination);
            if (!client.IsEjected && (tried is null || !tried.Contains(destination)))
            {
                return (destination, client);
            }
        }
        return null;
    }

    public DestinationClient For(Destination destination) =>
        _clients.GetOrAdd((destination.Inbound, destination.Identity.Value), _ => Create(destination));

    private DestinationClient Create(Destination destination)
    {
        var settings = options.ResilienceFor(destination.Service);
        var handler = ForwardingHandler(settings.ConnectTimeout);
        // New connections pick up a renewed certificate; old ones are retired in time, never cut mid-request.
        handler.PooledConnectionLifetime = TimeSpan.FromMinutes(10);
        handler.SslOptions = MeshTls.ClientOptions(state, refusals, destination, SslApplicationProtocol.Http2);
        var breakerState = new CircuitBreakerStateProvider();
        var breaker = new ResiliencePipelineBuilder<ForwardResult>()
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<ForwardResult>
            {
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result.IsEndpointFailure),
                FailureRatio = 0.5,
                MinimumThroughput = 5,
                SamplingDuration = TimeSpan.FromSeconds(10),
                BreakDuration = settings.EjectionTime,
                StateProvider = breakerState,
                OnOpened = _ =>
                {
                    metrics.Ejected(destination.Service);
                    return ValueTask.CompletedTask;
                },
            })
            .Build();
        return new DestinationClient(new HttpMessageInvoker(handler), breaker, breakerState, settings, options.PeerProtocol);
    }
}
