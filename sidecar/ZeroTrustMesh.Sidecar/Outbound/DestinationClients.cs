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

/// <summary>What the outbound path keeps per destination endpoint: its mTLS HTTP/2 client and its circuit breaker.</summary>
internal sealed class DestinationClient(HttpMessageInvoker invoker, ResiliencePipeline<ForwardResult> breaker, CircuitBreakerStateProvider state, ResilienceSettings settings)
{
    public ResilienceSettings Settings { get; } = settings;

    /// <summary>How YARP forwards to this endpoint: HTTP/2 only, with the destination's request idle timeout.</summary>
    public ForwarderRequestConfig Forwarding { get; } = new()
    {
        Version = System.Net.HttpVersion.Version20,
        VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        ActivityTimeout = settings.RequestTimeout,
    };

    public HttpMessageInvoker Invoker { get; } = invoker;

    /// <summary>Opens after repeated connect failures or timeouts: the endpoint is ejected until a trial request succeeds.</summary>
    public ResiliencePipeline<ForwardResult> Breaker { get; } = breaker;

    public bool IsEjected => state.CircuitState is CircuitState.Open or CircuitState.Isolated;
}

/// <summary>
/// One <see cref="DestinationClient"/> per (endpoint, identity), created on first use. Each client's connections
/// verify that the server is exactly the identity the registry gave for that endpoint, and multiplex every request
/// to it over HTTP/2. Endpoints are picked round-robin among those not ejected.
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
        return new DestinationClient(new HttpMessageInvoker(handler), breaker, breakerState, settings);
    }
}
