using Microsoft.AspNetCore.WebUtilities;
using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Forwarder;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Policy;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>
/// An HTTP request that arrived from another sidecar over mTLS (HTTP/2), or from a plaintext caller of a PERMISSIVE
/// workload (see <see cref="InboundConnectionMiddleware"/>), on its way to the local app:
/// 1. the caller is the SVID verified at this connection's handshake; a plaintext connection has none, and is
///    "plaintext" in metrics and the access log;
/// 2. the app port is the declared one the calling sidecar (or plaintext caller) named, else the app's first port;
/// 3. the config snapshot is read once: JWT rules, authorization, rate limits and PeerAuthentication of one version;
///    a plaintext request to a port that is STRICT now is a 403 (the connection is closed after it);
/// 4. JWT: a bearer token must be valid for a configured issuer (signature, issuer, audience, lifetime), else 401 with
///    the reason; its claims become the request's claims; no token passes unauthenticated, for the policy to decide;
/// 5. the policy decides: a matching DENY wins, else an ALLOW must match, else deny — a denial is a 403 naming the
///    policy and rule (or that none allowed it); a plaintext caller matches no <c>principals</c> or <c>namespaces</c>;
/// 6. rate limits: one token per caller identity (plaintext callers share one) from each bucket that applies, else
///    429 with Retry-After;
/// 7. the app is spoken to in the HTTP version the calling app used (gRPC needs HTTP/2);
/// 8. a validated JWT is removed unless its rule says <c>forwardOriginalToken</c>; YARP forwards the request to the app
///    on loopback, with the identity header set to the verified caller — any incoming copy is dropped, and a plaintext
///    caller gets none;
/// 9. one metric sample and one access-log line.
/// </summary>
internal sealed class InboundProxy(IHttpForwarder forwarder, SidecarOptions options, IdentityState state, InboundPolicyState policies, TimeProvider time, SidecarMetrics metrics, AccessLog accessLog)
{
    private readonly HttpMessageInvoker _toApp = new(Outbound.DestinationClients.ForwardingHandler(options.ConnectTimeout));

    private readonly InboundTransformer _transformer = new();

    /// <summary>Each declared app port's address, formatted once rather than per request.</summary>
    private readonly Dictionary<int, string> _appPrefixes = options.AppPorts.Distinct()
        .ToDictionary(p => p, p => $"http://{new IPEndPoint(options.AppAddress, p)}");

    private static readonly ForwarderRequestConfig ToAppHttp11 = new() { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
    private static readonly ForwarderRequestConfig ToAppHttp2 = new() { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };

    public async Task HandleAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var peer = context.Features.Get<PeerIdentityFeature>()?.Id;
        var plaintext = context.Features.Get<PlaintextConnectionFeature>() is not null;
        var self = state.Current?.Id.Value ?? "";
        if (peer is null && !plaintext)
        {
            // Unreachable: a connection is mTLS with a verified SVID, or plaintext that a PERMISSIVE workload accepted.
            await Refuse(context, StatusCodes.Status403Forbidden, "no_identity", "no verified client identity", "", self, started);
            return;
        }
        var caller = peer?.Value ?? PlaintextCaller;

        var port = PortFor(context.Request.Headers[MeshHeaders.TargetPort].ToString());
        if (port is null)
        {
            await Refuse(context, StatusCodes.Status404NotFound, "undeclared_port", $"port {context.Request.Headers[MeshHeaders.TargetPort]} is not a declared application port", caller, self, started);
            return;
        }

        var policy = policies.Current;
        if (plaintext && policy.PeerAuthentication.ModeFor(port.Value) != MtlsMode.Permissive)
        {
            // PERMISSIVE for another port, or switched back to STRICT since this connection was accepted: HTTP/1.1 is
            // told to close the connection (HTTP/2 has no such header; each of its requests is checked like this one).
            if (HttpProtocol.IsHttp11(context.Request.Protocol))
            {
                context.Response.Headers.Connection = "close";
            }
            var source = policy.PeerAuthentication.Source is { } name ? $" (PeerAuthentication '{name}')" : "";
            await Refuse(context, StatusCodes.Status403Forbidden, "mtls_required", $"mTLS required: port {port} of this workload is STRICT{source}", caller, self, started);
            return;
        }
        var authentication = await policy.Authentication.AuthenticateAsync(context.Request.Headers.Authorization, context.RequestAborted);
        if (authentication.Failed)
        {
            metrics.Authenticated(valid: false);
            context.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
            await Refuse(context, StatusCodes.Status401Unauthorized, "jwt_invalid", $"Jwt authentication failed: {authentication.Error}", caller, self, started);
            return;
        }
        if (authentication.Claims is not null)
        {
            metrics.Authenticated(valid: true);
        }

        var path = NormalizedPath(context.Request.Path.Value);
        var decision = policy.Authorization.Evaluate(new RequestAttributes
        {
            Caller = peer,
            CallerNamespace = peer is { } id && id.TryGetWorkload(out var callerNamespace, out _) ? callerNamespace : null,
            Method = context.Request.Method,
            Path = path,
            Port = port.Value,
            Headers = new HeaderValues(context.Request.Headers),
            Claims = authentication.Claims,
            SourceAddress = context.Connection.RemoteIpAddress,
            Now = time.GetUtcNow(),
        }, default);
        metrics.Decision(decision.Allowed, decision.Policy);
        if (!decision.Allowed)
        {
            // The reason names the deciding policy and rule, or says that none allowed the request.
            await Refuse(context, StatusCodes.Status403Forbidden, "denied", $"RBAC: access denied: {decision.Reason}", caller, self, started);
            return;
        }

        var limit = policy.RateLimits.TryAcquire(caller, context.Request.Method, path);
        if (!limit.Allowed)
        {
            metrics.RateLimited(limit.Policy!);
            context.Response.Headers.RetryAfter = limit.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await Refuse(context, StatusCodes.Status429TooManyRequests, "rate_limited", $"rate limited by policy {limit.Policy}: retry in {limit.RetryAfterSeconds}s", caller, self, started);
            return;
        }

        var http2 = plaintext ? HttpProtocol.IsHttp2(context.Request.Protocol) : context.Request.Headers[MeshHeaders.AppProtocol] == "2";

        if (authentication.Claims is not null && !authentication.ForwardOriginalToken)
        {
            // As in Istio: the token has done its work here; the app gets no credential it could replay elsewhere.
            context.Request.Headers.Remove(HeaderNames.Authorization);
        }
        var error = await forwarder.SendAsync(context, _appPrefixes[port.Value], _toApp, http2 ? ToAppHttp2 : ToAppHttp11, _transformer);
        if (error != ForwarderError.None && !context.Response.HasStarted)
        {
            context.Response.StatusCode = StatusCodes.Status502BadGateway;
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics.Request("inbound", caller, self, context.Response.StatusCode, elapsed);
        accessLog.Write("inbound", caller, self, context.Request.Method, context.Request.Path.Value ?? "", context.Response.StatusCode, elapsed,
            context.Request.ContentLength, context.Response.ContentLength, error == ForwarderError.None ? null : $"forward error: {error}");
    }

    /// <summary>The source of a request without a verified identity, in metrics, the access log and rate limits.</summary>
    public const string PlaintextCaller = "plaintext";

    private int? PortFor(string requested) =>
        string.IsNullOrEmpty(requested)
            ? options.AppPorts.Count > 0 ? options.AppPorts[0] : null
            : int.TryParse(requested, out var p) && options.AppPorts.Contains(p) ? p : null;

    /// <param name="kind">A fixed word for the metric label (the reason itself varies and would grow the label set).</param>
    /// <param name="reason">For the access log, and for the caller unless <c>--explain-denials false</c> hides it.</param>
    private async Task Refuse(HttpContext context, int status, string kind, string reason, string caller, string self, long started)
    {
        metrics.Rejected("inbound", kind);
        context.Response.StatusCode = status;
        await context.Response.WriteAsync((options.ExplainDenials ? reason : ReasonPhrases.GetReasonPhrase(status)) + "\n");
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
            if (httpContext.Features.Get<PeerIdentityFeature>() is { } peer)
            {
                proxyRequest.Headers.TryAddWithoutValidation(MeshHeaders.ClientIdentity, peer.Id.Value);
            }
            proxyRequest.Headers.Host = httpContext.Request.Host.Value;
        }
    }
}
