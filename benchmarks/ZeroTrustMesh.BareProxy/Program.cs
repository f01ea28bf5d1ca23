using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Polly;
using Prometheus;
using Yarp.ReverseProxy.Forwarder;

// ztm-bare-proxy --port <n, 0 = any free> --upstream <http://host:port> --grpc <http://host:port>
//                [--tls-client <pem> --ca <pem> --h2c-port <n>]    client side of a bare mTLS pair
//                [--tls-server <pem> --ca <pem>]                   server side of a bare mTLS pair
// The bare stack the sidecar stands on, as the issue describes it, with none of ZeroTrustMesh's code: Kestrel (core
// only), every request forwarded by YARP's IHttpForwarder through one HttpMessageInvoker inside a Polly timeout, one
// prometheus-net counter on /metrics, and a GrpcChannel that is created but never called. Without --tls-* it forwards
// plaintext to --upstream and is measured idle (RSS, binary size) next to the sidecar. With them, two instances do the
// sidecar pair's job as plainly as the stack allows, as the capacity floor of that stack (see benchmarks/README.md):
// --tls-client takes HTTP/1.1 on --port and h2c on --h2c-port and forwards everything over HTTP/2 with TLS 1.3 and a
// client certificate to --upstream (https), accepting a server that chains to --ca; --tls-server takes only mTLS
// HTTP/2 on --port (client certificates required and chained to --ca) and forwards gRPC to --grpc over h2c and
// everything else to --upstream over HTTP/1.1.
// ZTM_BARE_PEER_HTTP=1.1 in the environment (an experiment for issue 20, not the pair's default): the client side sends
// what is not gRPC to its peer over pooled HTTP/1.1 connections (TLS, ALPN http/1.1) instead of HTTP/2, and the server
// side accepts both; gRPC stays on HTTP/2. It answers whether the mesh hop's protocol is where the stack's cost is.

string? Flag(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;

const string Usage = "usage: ztm-bare-proxy --port <port, 0 = any free> --upstream <http(s)://host:port> --grpc <http://host:port> "
    + "[--tls-client <cert+key pem> --ca <pem> --h2c-port <port> | --tls-server <cert+key pem> --ca <pem>]";
var clientPem = Flag("--tls-client");
var serverPem = Flag("--tls-server");
var caPem = Flag("--ca");
var h2cPort = 0;
var peerHttp11 = Environment.GetEnvironmentVariable("ZTM_BARE_PEER_HTTP") == "1.1";
if (!int.TryParse(Flag("--port"), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > IPEndPoint.MaxPort
    || !Uri.TryCreate(Flag("--upstream"), UriKind.Absolute, out var upstream) || !Uri.TryCreate(Flag("--grpc"), UriKind.Absolute, out var grpcAddress)
    || (clientPem is not null && serverPem is not null) || ((clientPem ?? serverPem) is not null && caPem is null)
    || (clientPem is not null && (!int.TryParse(Flag("--h2c-port"), NumberStyles.None, CultureInfo.InvariantCulture, out h2cPort) || h2cPort > IPEndPoint.MaxPort)))
{
    Console.Error.WriteLine(Usage);
    return 2;
}

X509Certificate2? certificate = null;
X509Certificate2Collection? roots = null;
if ((clientPem ?? serverPem) is { } pem)
{
    try
    {
        certificate = X509Certificate2.CreateFromPemFile(pem);
        roots = [];
        roots.ImportFromPemFile(caPem!);
    }
    catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
    {
        Console.Error.WriteLine($"ztm-bare-proxy: cannot load {pem} or {caPem}: {e.Message}");
        return 1;
    }
}

var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { Args = args });
builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
{
    kestrel.AddServerHeader = false;
    kestrel.Listen(IPAddress.Loopback, port, listen =>
    {
        if (serverPem is null)
        {
            return;
        }
        listen.Protocols = peerHttp11 ? HttpProtocols.Http1AndHttp2 : HttpProtocols.Http2;
        listen.UseHttps(new HttpsConnectionAdapterOptions
        {
            ServerCertificate = certificate,
            SslProtocols = SslProtocols.Tls13,
            ClientCertificateMode = ClientCertificateMode.RequireCertificate,
            ClientCertificateValidation = (peer, _, _) => ChainsToRoots(peer, roots!),
        });
    });
    if (clientPem is not null)
    {
        kestrel.Listen(IPAddress.Loopback, h2cPort, listen => listen.Protocols = HttpProtocols.Http2);
    }
});
builder.Services.AddHttpForwarder();
await using var app = builder.Build();

var forwarder = app.Services.GetRequiredService<IHttpForwarder>();
// Configured as the sidecar's handlers (DestinationClients.ForwardingHandler): no proxy, redirects, decompression,
// cookies or trace headers; a fixed 1 MiB HTTP/2 stream window.
var handler = new SocketsHttpHandler
{
    InitialHttp2StreamWindowSize = 1024 * 1024,
    UseProxy = false,
    AllowAutoRedirect = false,
    AutomaticDecompression = DecompressionMethods.None,
    UseCookies = false,
    ActivityHeadersPropagator = null,
    EnableMultipleHttp2Connections = true,
};
if (clientPem is not null)
{
    handler.SslOptions = new SslClientAuthenticationOptions
    {
        EnabledSslProtocols = SslProtocols.Tls13,
        ApplicationProtocols = peerHttp11 ? null : [SslApplicationProtocol.Http2], // null: HttpClient offers the request's version
        ClientCertificates = [certificate!],
        RemoteCertificateValidationCallback = (_, peer, _, _) => peer is X509Certificate2 server && ChainsToRoots(server, roots!),
    };
}
using var invoker = new HttpMessageInvoker(handler);
var timeout = new ResiliencePipelineBuilder().AddTimeout(TimeSpan.FromSeconds(30)).Build();
var registry = Metrics.NewCustomRegistry(); // a custom registry, as the sidecar's: no default process/.NET collectors
var requests = Metrics.WithCustomRegistry(registry).CreateCounter("bare_requests_total", "Requests forwarded.");
// Never called: its cost here is what creating the sidecar's control-plane channel brings into the binary and the heap.
using var channel = GrpcChannel.ForAddress(grpcAddress);
var destination = upstream.GetLeftPart(UriPartial.Authority);
var grpcDestination = grpcAddress.GetLeftPart(UriPartial.Authority);
var toPeer = new ForwarderRequestConfig { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
var toPeerHttp11 = new ForwarderRequestConfig { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
var toAppHttp11 = new ForwarderRequestConfig { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact };

app.Run(async context =>
{
    if (context.Request.Path == "/metrics" && clientPem is null && serverPem is null)
    {
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted);
        return;
    }
    requests.Inc();
    // The server side of a pair sends gRPC (HTTP/2 only) to the app's gRPC port and the rest as HTTP/1.1, as the
    // HAProxy pair's server side does; the client side sends everything to its peer over HTTP/2.
    var grpc = context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true;
    var (target, config) = serverPem is null ? (destination, clientPem is null ? ForwarderRequestConfig.Empty : peerHttp11 && !grpc ? toPeerHttp11 : toPeer)
        : grpc ? (grpcDestination, toPeer)
        : (destination, toAppHttp11);
    // YARP writes the error status (502, 504, …) itself when the forward fails.
    await timeout.ExecuteAsync(
        static (state, cancellation) => state.forwarder.SendAsync(state.context, state.target, state.invoker, state.config, HttpTransformer.Default, cancellation),
        (forwarder, context, target, invoker, config), context.RequestAborted);
});

await app.StartAsync();
// As the sidecar does once it is ready: collect the start-up garbage, compacting, so idle RSS is not start-up leftovers.
GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
var bound = new Uri(addresses.First()).Port;
Console.Out.WriteLine($"ztm-bare-proxy: listening on {(serverPem is null ? "http" : "https")}://127.0.0.1:{bound}");
Console.Out.Flush();
await app.WaitForShutdownAsync();
GC.KeepAlive(channel);
return 0;

// The peer's certificate chains to one of the pair's roots (what HAProxy's "verify required" and nginx's
// ssl_verify_client check; the sidecar also checks the SPIFFE ID).
static bool ChainsToRoots(X509Certificate2 peer, X509Certificate2Collection roots)
{
    using var chain = new X509Chain();
    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
    chain.ChainPolicy.CustomTrustStore.AddRange(roots);
    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
    return chain.Build(peer);
}
