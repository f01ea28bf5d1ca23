using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Prometheus;

namespace ZeroTrustMesh.ControlPlane.Telemetry;

/// <summary>
/// The metrics port: a plain HTTP/1.1 listener of the control plane's own Kestrel that answers <c>GET /metrics</c> in
/// Prometheus's text format and nothing else; the gRPC services are not reachable on it, nor the metrics on theirs.
/// </summary>
internal static class MetricsEndpoint
{
    public const string Path = "/metrics";
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>Listens on <paramref name="address"/>:<paramref name="port"/> (0: a free port, known from the result's endpoint once started).</summary>
    public static ListenOptions ListenMetrics(this KestrelServerOptions kestrel, IPAddress address, int port)
    {
        ListenOptions? metrics = null;
        kestrel.Listen(address, port, listen =>
        {
            listen.Protocols = HttpProtocols.Http1;
            metrics = listen;
        });
        return metrics!;
    }

    /// <summary>Answers every request that arrives on <paramref name="listener"/>; the others go on down the pipeline.</summary>
    public static IApplicationBuilder UseMetricsPort(this IApplicationBuilder app, Func<ListenOptions> listener, CollectorRegistry registry) =>
        app.Use((context, next) => context.Connection.LocalPort == listener().IPEndPoint!.Port ? ServeAsync(context, registry) : next(context));

    private static async Task ServeAsync(HttpContext context, CollectorRegistry registry)
    {
        if (context.Request.Path != Path)
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }
        if (!HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method))
        {
            context.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            context.Response.Headers.Allow = "GET, HEAD";
            return;
        }
        context.Response.ContentType = ContentType;
        if (HttpMethods.IsGet(context.Request.Method))
        {
            await registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted);
        }
    }
}
