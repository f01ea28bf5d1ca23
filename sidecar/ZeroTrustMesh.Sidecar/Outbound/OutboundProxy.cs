using System.Diagnostics;
using System.Net;
using Polly.CircuitBreaker;
using Yarp.ReverseProxy.Forwarder;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Registry;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Outbound;

/// <summary>The application port an outbound request is for; read by the transformer.</summary>
internal sealed class OutboundRouteFeature(int port)
{
    public int Port { get; } = port;
}

/// <summary>
/// An HTTP request from the local app on its way to another service:
/// 1. fail closed without a valid certificate;
/// 2. framing two parsers could read differently is refused (<see cref="RequestFraming"/>: 400, connection closed);
/// 3. the destination is the captured original address (iptables) or the request's authority
///    (absolute-form as an HTTP proxy, or the Host header; an IP there is an address, like a captured one), resolved
///    through the control plane's registry;
/// 4. the app port must be one the service declares (in Kubernetes: the target of the Service port dialled);
/// 5. YARP forwards it over mTLS, multiplexed on HTTP/2, to an endpoint whose server identity is checked at the
///    handshake; a connect failure of an idempotent request without a body is retried on another endpoint (as many
///    times as the destination's settings allow), and each endpoint's circuit breaker ejects it after repeated failures;
/// 6. one metric sample and one access-log line; a failed forward says why in the 502's body and the access log (and,
///    when the control plane revoked this sidecar's own certificate, that every peer refuses it at the handshake).
/// </summary>
internal sealed class OutboundProxy(
    IHttpForwarder forwarder,
    MeshRegistryClient registry,
    DestinationClients clients,
    IdentityState state,
    SidecarMetrics metrics,
    AccessLog accessLog)
{
    private readonly OutboundTransformer _transformer = new();

    public async Task HandleAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var identity = state.Valid;
        var self = identity?.Id.Value;
        if (identity is null || self is null)
        {
            await Refuse(context, StatusCodes.Status503ServiceUnavailable, "no certificate", "this sidecar holds no valid certificate", "", "", started);
            return;
        }

        if (RequestFraming.Problem(context.Request) is { } framing)
        {
            // A zero-trust proxy refuses rather than pick one reading, and the connection is closed.
            context.Response.Headers.Connection = "close";
            await Refuse(context, StatusCodes.Status400BadRequest, "malformed", framing, self, "", started);
            return;
        }

        IReadOnlyList<Destination> destinations;
        int? requestedPort;
        string target;
        // An address: the captured original destination, or an authority that is an IP (a ClusterIP the app dialled
        // through the sidecar as its HTTP proxy); a name otherwise.
        var address = context.Features.Get<OriginalDestinationFeature>()?.Destination
            ?? (IPAddress.TryParse(context.Request.Host.Host, out var literal) ? new IPEndPoint(literal, context.Request.Host.Port ?? 80) : null);
        (target, requestedPort) = address is not null ? (address.ToString(), address.Port) : (context.Request.Host.Host, context.Request.Host.Port);
        try
        {
            destinations = address is not null ? await registry.ResolveAddressAsync(address, context.RequestAborted)
                : string.IsNullOrEmpty(target) ? [] : await registry.ResolveServiceAsync(target, context.RequestAborted);
        }
        catch (RegistryUnavailableException e)
        {
            await Refuse(context, StatusCodes.Status503ServiceUnavailable, "registry unavailable", e.Message, self, target, started);
            return;
        }
        if (destinations.Count == 0)
        {
            await Refuse(context, StatusCodes.Status503ServiceUnavailable, "unknown service", $"no endpoints for '{target}' in the mesh (nothing is sent to a pod without a sidecar: the mesh sends no plaintext)", self, target, started);
            return;
        }
        var service = destinations[0].Service;
        if (destinations[0].HttpPortFor(requestedPort) is not { } port)
        {
            await Refuse(context, StatusCodes.Status404NotFound, "port not declared", $"port {requestedPort} is not a declared HTTP port of '{service}'", self, service, started);
            return;
        }
        context.Features.Set(new OutboundRouteFeature(port));

        var error = ForwarderError.None;
        var failedStatus = StatusCodes.Status502BadGateway;
        Destination? destination = null;
        List<Destination>? tried = null; // only a retry needs it
        for (var attempt = 0; ; attempt++)
        {
            if (clients.Pick(destinations, tried) is not var (next, client))
            {
                if (destination is null)
                {
                    await Refuse(context, StatusCodes.Status503ServiceUnavailable, "all endpoints ejected", $"every endpoint of '{service}' is ejected", self, service, started);
                    return;
                }
                // Retries exhausted the endpoints: answer with the last attempt's error status (reset below for the retry).
                context.Response.StatusCode = failedStatus;
                break;
            }
            destination = next;
            try
            {
                error = (await client.Breaker.ExecuteAsync(
                    async ct => new ForwardResult(await forwarder.SendAsync(context, next.InboundPrefix, client.Invoker, client.Forwarding, _transformer, ct)),
                    context.RequestAborted)).Error;
            }
            catch (BrokenCircuitException)
            {
                error = ForwarderError.Request;
            }
            if (error != ForwarderError.Request || attempt >= client.Settings.Retries || context.Response.HasStarted || !CanRetry(context.Request))
            {
                break;
            }
            (tried ??= []).Add(next);
            metrics.Retried(service);
            failedStatus = context.Response.StatusCode;
            context.Response.StatusCode = StatusCodes.Status200OK;
        }

        var peer = destination?.Identity.Value ?? service;
        string? reason = null;
        if (error != ForwarderError.None)
        {
            reason = $"forward to {peer} at {destination?.Inbound} failed: {error}{Inbound.InboundProxy.Detail(context.Features.Get<IForwarderErrorFeature>()?.Exception)}";
            if (state.Revocations.Find(identity.Certificate, identity.Id) is { } revoked)
            {
                reason += $"; this sidecar's certificate {identity.Serial} is revoked ({revoked.Subject}"
                    + $"{(revoked.Reason.Length > 0 ? $": {revoked.Reason}" : "")}), so every peer refuses it: the workload needs a new join token";
            }
            if (!context.Response.HasStarted)
            {
                await context.Response.WriteAsync(reason + "\n");
            }
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics.Request("outbound", self, peer, context.Response.StatusCode, elapsed);
        accessLog.Write("outbound", self, peer, context.Request.Method, context.Request.Path.Value ?? "", context.Response.StatusCode, elapsed,
            context.Request.ContentLength, context.Response.ContentLength, reason);
    }

    /// <summary>Only idempotent requests with no body are replayed: nothing of them can have been consumed.</summary>
    private static bool CanRetry(HttpRequest request) =>
        (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) || HttpMethods.IsOptions(request.Method)
            || HttpMethods.IsDelete(request.Method) || HttpMethods.IsPut(request.Method) || HttpMethods.IsTrace(request.Method))
        && request.ContentLength is null or 0 && !request.Headers.ContainsKey("Transfer-Encoding");

    /// <param name="kind">A fixed word for the metric label (the reason itself varies and would grow the label set).</param>
    private async Task Refuse(HttpContext context, int status, string kind, string reason, string self, string destination, long started)
    {
        metrics.Rejected("outbound", kind);
        context.Response.StatusCode = status;
        await context.Response.WriteAsync(reason + "\n");
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics.Request("outbound", self, destination, status, elapsed);
        accessLog.Write("outbound", self, destination, context.Request.Method, context.Request.Path.Value ?? "", status, elapsed, null, null, reason);
    }

    private sealed class OutboundTransformer : HttpTransformer
    {
        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
            // The app cannot assert an identity: the inbound sidecar sets it from our certificate.
            MeshHeaders.Strip(proxyRequest.Headers, httpContext.Request.Headers);
            proxyRequest.Headers.Remove("Proxy-Connection");
            proxyRequest.Headers.Remove("Proxy-Authorization");
            proxyRequest.Headers.TryAddWithoutValidation(MeshHeaders.TargetPort, httpContext.Features.Get<OutboundRouteFeature>()!.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
            proxyRequest.Headers.TryAddWithoutValidation(MeshHeaders.AppProtocol, HttpProtocol.IsHttp2(httpContext.Request.Protocol) ? "2" : "1.1");
            proxyRequest.Headers.Host = httpContext.Request.Host.Value;
        }
    }
}
