using System.Globalization;
using System.Net;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Polly;
using Prometheus;
using Yarp.ReverseProxy.Forwarder;

// ztm-bare-proxy --port <n, 0 = any free> --upstream <http://host:port> --grpc <http://host:port>
// The bare stack the sidecar stands on, as the issue describes it, with none of ZeroTrustMesh's code: Kestrel (core
// only), every request forwarded to --upstream by YARP's IHttpForwarder through one HttpMessageInvoker inside a Polly
// timeout, one prometheus-net counter on /metrics, and a GrpcChannel that is created but never called. It exists to be
// measured (idle RSS, binary size) next to the sidecar; see benchmarks/README.md.

string? Flag(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;

if (!int.TryParse(Flag("--port"), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > IPEndPoint.MaxPort
    || !Uri.TryCreate(Flag("--upstream"), UriKind.Absolute, out var upstream) || !Uri.TryCreate(Flag("--grpc"), UriKind.Absolute, out var grpcAddress))
{
    Console.Error.WriteLine("usage: ztm-bare-proxy --port <port, 0 = any free> --upstream <http://host:port> --grpc <http://host:port>");
    return 2;
}

var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { Args = args });
builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
{
    kestrel.AddServerHeader = false;
    kestrel.Listen(IPAddress.Loopback, port);
});
builder.Services.AddHttpForwarder();
await using var app = builder.Build();

var forwarder = app.Services.GetRequiredService<IHttpForwarder>();
// Configured as the sidecar's handler to its app: no proxy, redirects, decompression, cookies or trace headers.
using var invoker = new HttpMessageInvoker(new SocketsHttpHandler
{
    UseProxy = false,
    AllowAutoRedirect = false,
    AutomaticDecompression = DecompressionMethods.None,
    UseCookies = false,
    ActivityHeadersPropagator = null,
});
var timeout = new ResiliencePipelineBuilder().AddTimeout(TimeSpan.FromSeconds(30)).Build();
var registry = Metrics.NewCustomRegistry(); // a custom registry, as the sidecar's: no default process/.NET collectors
var requests = Metrics.WithCustomRegistry(registry).CreateCounter("bare_requests_total", "Requests forwarded.");
// Never called: its cost here is what creating the sidecar's control-plane channel brings into the binary and the heap.
using var channel = GrpcChannel.ForAddress(grpcAddress);
var destination = upstream.GetLeftPart(UriPartial.Authority);

app.Run(async context =>
{
    if (context.Request.Path == "/metrics")
    {
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted);
        return;
    }
    requests.Inc();
    // YARP writes the error status (502, 504, …) itself when the forward fails.
    await timeout.ExecuteAsync(
        static (state, cancellation) => state.forwarder.SendAsync(state.context, state.destination, state.invoker, ForwarderRequestConfig.Empty, HttpTransformer.Default, cancellation),
        (forwarder, context, destination, invoker), context.RequestAborted);
});

await app.StartAsync();
// As the sidecar does once it is ready: collect the start-up garbage, compacting, so idle RSS is not start-up leftovers.
GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
var bound = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single());
Console.Out.WriteLine($"ztm-bare-proxy: listening on http://127.0.0.1:{bound.Port}");
Console.Out.Flush();
await app.WaitForShutdownAsync();
GC.KeepAlive(channel);
return 0;
