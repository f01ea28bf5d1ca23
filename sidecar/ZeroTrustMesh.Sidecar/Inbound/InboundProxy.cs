using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>
/// An HTTP request that arrived from another sidecar over mTLS (HTTP/2), on its way to the local app:
/// 1. the caller is the SVID verified at this connection's handshake (STRICT: there is always one);
/// 2. the app port is the declared one the calling sidecar named, else the app's first port;
/// 3. the policy decides: a matching DENY wins, else an ALLOW must match, else deny — a denial is a 403 naming the
///    policy and rule (or that none allowed it);
/// 4. the app is spoken to in the HTTP version the calling app used (gRPC needs HTTP/2);
/// 5. YARP forwards it to the app on loopback, with the identity header set to the caller — any incoming copy is dropped;
/// 6. one metric sample and one access-log line.
/// </summary>
internal sealed class InboundProxy(IHttpForwarder forwarder, SidecarOptions options, IdentityState state, Authorizer authorizer, TimeProvider time, SidecarMetrics metrics, AccessLog accessLog)
{
    private readonly HttpMessageInvoker _toApp = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        EnableMultipleHttp2Connections = true,
        ActivityHeadersPropagator = null, // pass the caller's traceparent through untouched
        ConnectTimeout = options.ConnectTimeout,
    });

    private readonly InboundTransformer _transformer = new();

    public async Task HandleAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var caller = context.Features.Get<PeerIdentityFeature>()?.Id.Value;
        var self = state.Current?.Id.Value ?? "";
        if (caller is null)
        {
            // Unreachable under STRICT mTLS; refuse rather than forward an unauthenticated request.
            await Refuse(context, StatusCodes.Status403Forbidden, "no verified client identity", "", self, started);
            return;
        }

        var port = PortFor(context.Request.Headers[MeshHeaders.TargetPort].ToString());
        if (port is null)
        {
            await Refuse(context, StatusCodes.Status404NotFound, $"port {context.Request.Headers[MeshHeaders.TargetPort]} is not a declared application port", caller, self, started);
            return;
        }

        var peer = context.Features.Get<PeerIdentityFeature>()!.Id;
        var decision = authorizer.Authorize(new RequestAttributes
        {
            Caller = peer,
            CallerNamespace = peer.TryGetWorkload(out var callerNamespace, out _) ? callerNamespace : null,
            Method = context.Request.Method,
            Path = NormalizedPath(context.Request.Path.Value),
            Port = port.Value,
            Headers = new HeaderValues(context.Request.Headers),
            SourceAddress = context.Connection.RemoteIpAddress,
            Now = time.GetUtcNow(),
        });
        metrics.Decision(decision.Allowed, decision.Policy);
        if (!decision.Allowed)
        {
            // The reason names the deciding policy and rule, or says that none allowed the request.
            await Refuse(context, StatusCodes.Status403Forbidden, $"RBAC: access denied: {decision.Reason}", caller, self, started);
            return;
        }

        var http2 = context.Request.Headers[MeshHeaders.AppProtocol] == "2";
        var config = new ForwarderRequestConfig
        {
            Version = http2 ? HttpVersion.Version20 : HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };

        var error = await forwarder.SendAsync(context, $"http://{options.AppAddress}:{port}", _toApp, config, _transformer);
        if (error != ForwarderError.None && !context.Response.HasStarted)
        {
            context.Response.StatusCode = StatusCodes.Status502BadGateway;
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics.Request("inbound", caller, self, context.Response.StatusCode, elapsed);
        accessLog.Write("inbound", caller, self, context.Request.Method, context.Request.Path.Value ?? "", context.Response.StatusCode, elapsed,
            context.Request.ContentLength, context.Response.ContentLength, error == ForwarderError.None ? null : $"forward error: {error}");
    }

    private int? PortFor(string requested) =>
        string.IsNullOrEmpty(requested)
            ? options.AppPorts.Count > 0 ? options.AppPorts[0] : null
            : int.TryParse(requested, out var p) && options.AppPorts.Contains(p) ? p : null;

    private async Task Refuse(HttpContext context, int status, string reason, string caller, string self, long started)
    {
        metrics.Rejected("inbound", reason);
        context.Response.StatusCode = status;
        await context.Response.WriteAsync(reason + "\n");
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics.Request("inbound", caller, self, status, elapsed);
        accessLog.Write("inbound", caller, self, context.Request.Method, context.Request.Path.Value ?? "", status, elapsed, null, null, reason);
    }

    /// <summary>
    /// The path as policy sees it. Kestrel has already decoded percent-escapes of unreserved characters and removed
    /// dot segments; empty segments are merged here, so <c>//admin/x</c> cannot slip past a rule on <c>/admin/*</c>.
    /// </summary>
    private static string NormalizedPath(string? path)
    {
        if (string.IsNullOrEmpty(path))
        {
            return "/";
        }
        if (!path.Contains("//", StringComparison.Ordinal))
        {
            return path;
        }
        var builder = new System.Text.StringBuilder(path.Length);
        foreach (var c in path)
        {
            if (c != '/' || builder.Length == 0 || builder[^1] != '/')
            {
                builder.Append(c);
            }
        }
        return builder.ToString();
    }

    /// <summary>Request headers for the authorizer, read in place.</summary>
    private sealed class HeaderValues(IHeaderDictionary headers) : IRequestValues
    {
        public bool TryGetValue(string name, int index, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? value)
        {
            value = headers.TryGetValue(name, out StringValues values) && index < values.Count ? values[index] : null;
            return value is not null;
        }
    }

    private sealed class InboundTransformer : HttpTransformer
    {
        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
            MeshHeaders.Strip(proxyRequest.Headers);
            proxyRequest.Headers.TryAddWithoutValidation(MeshHeaders.ClientIdentity, httpContext.Features.Get<PeerIdentityFeature>()!.Id.Value);
            proxyRequest.Headers.Host = httpContext.Request.Host.Value;
        }
    }
}
