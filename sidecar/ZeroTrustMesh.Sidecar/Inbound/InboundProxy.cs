using System.Diagnostics;
using System.Net;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Forwarder;
using ZeroTrustMesh.Sidecar.Http1;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Observations;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>
/// An HTTP request that arrived from another sidecar over mTLS (HTTP/2), or from a plaintext caller of a PERMISSIVE
/// workload (see <see cref="InboundConnectionMiddleware"/>), on its way to the local app:
/// 1. the caller is the SVID verified at this connection's handshake; a plaintext connection has none, and is
///    "plaintext" in metrics, the access log and rate limits;
/// 2. framing two parsers could read differently is refused (<see cref="RequestFraming"/>: 400, connection closed);
/// 3. the app port is the declared one the calling sidecar (or plaintext caller) named, else the app's first port;
/// 4. the path is normalized once (<see cref="InboundPath"/>): policy matches, and the app receives, the same path;
/// 5. the config snapshot is read once and its stages run in order over one request record
///    (<see cref="InboundRequest"/>), each able to refuse: peer authentication (a plaintext request to a STRICT port:
///    403), JWT authentication (401; its claims go on to the next stages), authorization (403 naming the policy and
///    rule), rate limits (429 with Retry-After), then the kinds that come after them (API protection, response
///    transforms). A refusal is answered and recorded in one place (status, reason, access-log line, metrics);
/// 6. the app is spoken to in the HTTP version the calling app used (gRPC needs HTTP/2);
/// 7. YARP forwards the request to the app on loopback (or, with <c>--http1-fast-path</c>, <see cref="Http1AppHop"/> for
///    HTTP/1.1 it can carry, sending and answering alike), with the identity header set to the verified caller — any
///    incoming copy, and any header name a framework would fold into it, is dropped, and a plaintext caller gets none —,
///    the validated JWT removed unless its rule keeps it, a body a stage buffered replayed as it came, and the response
///    through the transforms stages registered;
/// 8. one metric sample, one access-log line, one observation for the control plane (<see cref="ObservationBuffer"/>;
///    refusals too, with what the stages had found by then) and, with <c>--decision-log</c>, one decision-log record.
/// </summary>
internal sealed class InboundProxy(IHttpForwarder forwarder, SidecarOptions options, IdentityState state, InboundSnapshotState snapshots, TimeProvider time, SidecarMetrics metrics, AccessLog accessLog,
    ObservationBuffer observations, DecisionLog.DecisionLogWriter decisionLog)
{
    private readonly HttpMessageInvoker _toApp = new(Outbound.DestinationClients.ForwardingHandler(options.ConnectTimeout));

    private readonly InboundTransformer _transformer = new(null);

    /// <summary>With <c>--http1-fast-path</c>: the app hop for HTTP/1.1 requests without HttpClient (YARP takes the rest).</summary>
    private readonly Http1AppHop? _fastPath = options.Http1FastPath
        ? new(new Http1AppPool(options.AppAddress, options.AppPorts, time, options.ConnectTimeout, Http1AppPool.DefaultIdleTimeout), Http1AppHop.DefaultActivityTimeout)
        : null;

    /// <summary>Each declared app port's address, formatted once rather than per request.</summary>
    private readonly Dictionary<int, string> _appPrefixes = options.AppPorts.Distinct()
        .ToDictionary(p => p, p => $"http://{new IPEndPoint(options.AppAddress, p)}");

    private static readonly ForwarderRequestConfig ToAppHttp11 = new() { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
    private static readonly ForwarderRequestConfig ToAppHttp2 = new() { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };

    public async Task HandleAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var self = state.Current?.Id.Value ?? "";
        var peer = context.Features.Get<PeerIdentityFeature>()?.Id;
        var plaintext = context.Features.Get<PlaintextConnectionFeature>() is not null;
        var caller = peer?.Value ?? InboundRequest.PlaintextCaller;
        if (peer is null && !plaintext)
        {
            // Unreachable: a connection is mTLS with a verified SVID, or plaintext that a PERMISSIVE workload accepted.
            await Refuse(context, new Refusal(StatusCodes.Status403Forbidden, "no_identity", "no verified client identity"), "", self, started, null, 0);
            return;
        }
        if (RequestFraming.Problem(context.Request) is { } framing)
        {
            await Refuse(context, new Refusal(StatusCodes.Status400BadRequest, "malformed", framing) { CloseConnection = true }, caller, self, started, null, 0);
            return;
        }
        // A connection relayed over ztm-tcp/1 named its port in the preamble; its requests are the app's own, and so
        // are their mesh headers, which say nothing here.
        var relayed = context.Features.Get<RelayedPortFeature>()?.Port;
        if ((relayed ?? PortFor(context.Request.Headers[MeshHeaders.TargetPort].ToString())) is not { } port)
        {
            await Refuse(context, new Refusal(StatusCodes.Status404NotFound, "undeclared_port",
                $"port {context.Request.Headers[MeshHeaders.TargetPort]} is not a declared application port"), caller, self, started, null, 0);
            return;
        }
        if (InboundPath.Normalize(context.Request.Path.Value, options.EscapedSlashes, out var pathRefusal) is not { } path)
        {
            await Refuse(context, new Refusal(StatusCodes.Status400BadRequest, "escaped_slash", pathRefusal!), caller, self, started, null, port);
            return;
        }

        var request = new InboundRequest(context, peer, port, path, time.GetUtcNow());
        foreach (var stage in snapshots.Current.Pipeline)
        {
            if ((await stage.RunAsync(request, context.RequestAborted)).Refusal is { } refusal)
            {
                await Refuse(context, refusal, caller, self, started, request, port);
                return;
            }
        }

        var http2 = plaintext || relayed is not null ? HttpProtocol.IsHttp2(context.Request.Protocol) : context.Request.Headers[MeshHeaders.AppProtocol] == "2";
        if (request.RemoveAuthorization)
        {
            context.Request.Headers.Remove(HeaderNames.Authorization);
        }
        if (!string.Equals(path, context.Request.Path.Value, StringComparison.Ordinal))
        {
            context.Request.Path = new PathString(path); // the app reads the path the policy matched
        }
        var transformer = request.ResponseTransforms is { } transforms ? new InboundTransformer(transforms) : _transformer;
        var hop = _fastPath is null ? Http1HopResult.NotCarried : await _fastPath.SendAsync(context, port, http2, transformer);
        var (error, exception) = hop.Carried
            ? (hop.Error, hop.Exception)
            : (await forwarder.SendAsync(context, _appPrefixes[port], _toApp, http2 ? ToAppHttp2 : ToAppHttp11, transformer),
                context.Features.Get<IForwarderErrorFeature>()?.Exception);
        await transformer.CompleteAsync();
        string? reason = null;
        if (error != ForwarderError.None)
        {
            reason = $"forward to the app on port {port} failed: {error}{Detail(exception)}";
            if (!context.Response.HasStarted)
            {
                context.Response.StatusCode = StatusCodes.Status502BadGateway;
                await context.Response.WriteAsync(reason + "\n");
            }
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics.Request("inbound", caller, self, context.Response.StatusCode, elapsed);
        accessLog.Write("inbound", caller, self, context.Request.Method, context.Request.Path.Value ?? "", context.Response.StatusCode, elapsed,
            context.Request.ContentLength, context.Response.ContentLength, reason);
        observations.Record(new RequestObservation(request.Now, caller, request.Subject, request.Method, path, request.ApiTemplate, port,
            context.Response.StatusCode, Allowed: true, request.DecidingPolicy, request.DecidingRule, request.SchemaVerdict,
            context.Request.ContentLength ?? 0, context.Response.ContentLength ?? 0, elapsed, request.Authorization?.Audit ?? default));
        decisionLog.Record(context, request, context.Response.StatusCode, refused: false, reason);
    }

    /// <summary>Why the app could not be reached, in a few words (the exception's message), for the 502 and the access log.</summary>
    internal static string Detail(Exception? exception) =>
        exception is { } e ? $" ({e.GetBaseException().Message.TrimEnd('.')})" : "";

    private int? PortFor(string requested) =>
        string.IsNullOrEmpty(requested)
            ? options.AppPorts.Count > 0 ? options.AppPorts[0] : null
            : int.TryParse(requested, out var p) && options.AppPorts.Contains(p) ? p : null;

    /// <summary>
    /// The one refuse-and-record path: the status and its header, the reason as the body (unless
    /// <c>--explain-denials false</c> hides it), <c>ztm_rejected_requests_total</c>, the request metric and an access-log
    /// line with the reason.
    /// </summary>
    /// <param name="request">The request record once the stages run (null before); <paramref name="port"/> 0 before it is known.</param>
    private async Task Refuse(HttpContext context, Refusal refusal, string caller, string self, long started, InboundRequest? request, int port)
    {
        metrics.Rejected("inbound", refusal.Kind);
        context.Response.StatusCode = refusal.Status;
        if (refusal.Header is var (name, value))
        {
            context.Response.Headers[name] = value;
        }
        if (refusal.CloseConnection && HttpProtocol.IsHttp11(context.Request.Protocol))
        {
            context.Response.Headers.Connection = "close";
        }
        await context.Response.WriteAsync((options.ExplainDenials ? refusal.Reason : ReasonPhrases.GetReasonPhrase(refusal.Status)) + "\n");
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics.Request("inbound", caller, self, refusal.Status, elapsed);
        accessLog.Write("inbound", caller, self, context.Request.Method, context.Request.Path.Value ?? "", refusal.Status, elapsed, null, null, refusal.Reason);
        observations.Record(new RequestObservation(request?.Now ?? time.GetUtcNow(), caller, request?.Subject, context.Request.Method,
            request?.Path ?? context.Request.Path.Value ?? "", request?.ApiTemplate, port, refusal.Status, Allowed: false,
            request?.DecidingPolicy, request?.DecidingRule ?? -1, request?.SchemaVerdict ?? default, context.Request.ContentLength ?? 0, 0, elapsed,
            request?.Authorization?.Audit ?? default));
        decisionLog.Record(context, request, refusal.Status, refused: true, refusal.Reason);
    }
}
