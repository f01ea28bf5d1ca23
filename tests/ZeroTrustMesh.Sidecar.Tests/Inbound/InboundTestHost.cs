using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Google.Protobuf;
using Yarp.ReverseProxy.Forwarder;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Yaml;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Tests.Inbound;

/// <summary>
/// The sidecar's inbound listener as it runs in production — the connection middleware, the stage pipeline and YARP
/// forwarding, composed with the sidecar's own DI registrations — in front of a real app, both on Kestrel at
/// 127.0.0.1:0. Callers connect in plaintext, so the workload's config must be PERMISSIVE (the mTLS handshake in front
/// of the same pipeline is covered end to end with real processes). Config goes the way the mesh takes it: YAML read and
/// validated by the control plane's reader, the typed wire form, then the sidecar's compile.
/// </summary>
internal sealed class InboundTestHost : IAsyncDisposable
{
    public static readonly WorkloadRef Orders = new("shop", "orders");

    /// <summary>A PeerAuthentication that lets these tests reach the pipeline in plaintext; the rest of a config follows it.</summary>
    public const string Permissive = """
        apiVersion: security.ztm.dev/v1
        kind: PeerAuthentication
        metadata: {name: orders-mtls, namespace: shop}
        spec: {selector: {service: orders}, mode: PERMISSIVE}
        ---

        """;

    /// <summary><see cref="Permissive"/> and one ALLOW policy that lets every caller reach orders.</summary>
    public const string PermissiveAndOpen = Permissive + """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-open, namespace: shop}
        spec:
          selector: {service: orders}
          rules: [{}]

        """;

    private readonly WebApplication _app;
    private readonly WebApplication _sidecar;

    private InboundTestHost(WebApplication app, WebApplication sidecar, int inboundPort, int http2AppPort)
    {
        _app = app;
        _sidecar = sidecar;
        InboundPort = inboundPort;
        Http2AppPort = http2AppPort;
        State = sidecar.Services.GetRequiredService<InboundSnapshotState>();
    }

    public int InboundPort { get; }

    /// <summary>The app's second port, speaking HTTP/2 in cleartext (prior knowledge), where h2c callers are sent with <c>x-ztm-target-port</c>.</summary>
    public int Http2AppPort { get; }

    public InboundSnapshotState State { get; }

    /// <summary>Where the inbound path records each request's observation (nothing drains it here but the test).</summary>
    public global::ZeroTrustMesh.Sidecar.Observations.ObservationBuffer Observations => _sidecar.Services.GetRequiredService<global::ZeroTrustMesh.Sidecar.Observations.ObservationBuffer>();

    public SidecarMetrics Metrics => _sidecar.Services.GetRequiredService<SidecarMetrics>();

    public Uri BaseAddress => new($"http://127.0.0.1:{InboundPort}");

    /// <param name="extraKinds">Stage kinds registered from the test, one line each, as the sidecar registers its own.</param>
    /// <param name="observationBuffer">The sidecar's <c>--observation-buffer</c>.</param>
    /// <param name="http1FastPath">The sidecar's <c>--http1-fast-path</c>.</param>
    /// <param name="firstAppPort">An app port declared before the test app's two (so the default one), for an app a test plays itself.</param>
    /// <param name="time">The sidecar's clock (the system's by default).</param>
    public static async Task<InboundTestHost> StartAsync(Action<IServiceCollection>? extraKinds = null, EscapedSlashes escapedSlashes = EscapedSlashes.Reject,
        int observationBuffer = SidecarOptions.DefaultObservationBuffer, bool http1FastPath = false, int? firstAppPort = null, TimeProvider? time = null)
    {
        var app = await StartAppAsync();
        var appPorts = Ports(app);
        var declared = firstAppPort is { } first ? [first, .. appPorts] : appPorts;

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        var services = builder.Services;
        services.AddSingleton(new SidecarOptions
        {
            ControlPlane = new Uri("https://127.0.0.1:1"),
            BootstrapBundle = new ZeroTrustMesh.Identity.TrustBundle("cluster.local", [SelfSigned()], 1),
            Proof = new ZeroTrustMesh.Sidecar.Identity.IdentityProof.JoinToken("unused"),
            AdminPort = 0,
            InboundEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            OutboundPort = 0,
            AppPorts = declared,
            TcpPorts = [],
            Http1FastPath = http1FastPath,
            AccessLog = false,
            EscapedSlashes = escapedSlashes,
            ObservationBuffer = observationBuffer,
        });
        services.AddSingleton(time ?? TimeProvider.System);
        services.AddSingleton<IdentityState>();
        services.AddSingleton<SidecarMetrics>();
        services.AddSingleton<Sidecar.Tls.RefusalLog>();
        services.AddSingleton<AccessLog>();
        services.AddSingleton<Sidecar.DecisionLog.CheckpointSender>();
        services.AddSingleton<Sidecar.DecisionLog.DecisionLogWriter>(); // off: no --decision-log
        services.AddHttpForwarder();
        services.AddInbound();
        extraKinds?.Invoke(services);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                var connections = kestrel.ApplicationServices.GetRequiredService<InboundConnectionMiddleware>();
                listen.Use(connections.BeforeTls);
                listen.UseHttps(new TlsHandshakeCallbackOptions
                {
                    OnConnection = _ => throw new InvalidOperationException("these tests connect in plaintext"),
                });
                listen.Use(connections.AfterTls);
            });
        });
        var sidecar = builder.Build();
        var proxy = sidecar.Services.GetRequiredService<InboundProxy>();
        sidecar.Run(proxy.HandleAsync);
        await sidecar.StartAsync();
        return new InboundTestHost(app, sidecar, Ports(sidecar)[0], appPorts[1]);
    }

    /// <summary>Reads <paramref name="yaml"/> as the control plane does, sends it as config <paramref name="version"/>, and makes the sidecar enforce it.</summary>
    /// <param name="resources">Resources as the control plane compiled them (an ApiSpec's operations with typed schemas, which YAML's text scalars cannot carry), sent after the YAML's.</param>
    public InboundSnapshot Apply(string version, string yaml, PolicyKinds kinds, params ZeroTrustMesh.Policy.Model.PolicyResource[] resources)
    {
        var read = PolicyYaml.Load("test.yaml", yaml, kinds);
        Assert.True(read.IsValid, string.Join("\n", read.Errors));
        var config = new ConfigSnapshot { Version = version };
        config.Resources.AddRange(read.Documents.Select(d => d.Resource).Concat(resources).Select(r => r.ToProto(kinds)));
        var compiled = State.Compile(ConfigSnapshot.Parser.ParseFrom(config.ToByteArray()), Orders);
        State.Update(compiled);
        return compiled;
    }

    /// <summary>Sends raw bytes and reads the answer until the server closes the connection or <paramref name="timeout"/>.</summary>
    public async Task<string> SendRawAsync(string request, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, InboundPort, cancel.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request), cancel.Token);
        using var answer = new MemoryStream();
        var buffer = new byte[4096];
        int read;
        while ((read = await stream.ReadAsync(buffer, cancel.Token)) > 0)
        {
            answer.Write(buffer, 0, read);
        }
        return Encoding.ASCII.GetString(answer.ToArray());
    }

    /// <summary>
    /// The app: <c>POST /echo</c> answers the body it received; <c>POST /respond?status=&amp;type=&amp;length</c> too, with that
    /// status, content type and framing; <c>GET /secret</c> a text holding "hunter2"; any other path
    /// answers with the path and the request headers it received, one per line; <c>/connection</c> the id of the connection
    /// it came on; <c>/close</c> answers with <c>Connection: close</c>.
    /// </summary>
    private static async Task<WebApplication> StartAppAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http1);
            k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2);
        });
        var app = builder.Build();
        app.Run(async context =>
        {
            if (context.Request.Path == "/echo")
            {
                using var reader = new StreamReader(context.Request.Body);
                await context.Response.WriteAsync(await reader.ReadToEndAsync());
                return;
            }
            if (context.Request.Path == "/respond")
            {
                // The request body back, with the status and content type the query asks for, in 1000-byte writes,
                // with a Content-Length when ?length is given (else chunked, or HTTP/2 DATA frames without one).
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                var bytes = body.ToArray();
                context.Response.StatusCode = int.TryParse(context.Request.Query["status"], out var status) ? status : 200;
                context.Response.ContentType = context.Request.Query["type"];
                if (context.Request.Query.ContainsKey("length"))
                {
                    context.Response.ContentLength = bytes.Length;
                }
                for (var offset = 0; offset < bytes.Length; offset += 1000)
                {
                    await context.Response.Body.WriteAsync(bytes.AsMemory(offset, Math.Min(1000, bytes.Length - offset)));
                    await context.Response.Body.FlushAsync();
                }
                return;
            }
            if (context.Request.Path == "/connection")
            {
                // Which connection the request came on, to see the sidecar's connection reuse.
                await context.Response.WriteAsync(context.Connection.Id);
                return;
            }
            if (context.Request.Path == "/close")
            {
                context.Response.Headers.Connection = "close";
                await context.Response.WriteAsync("closing");
                return;
            }
            if (context.Request.Path == "/secret")
            {
                context.Response.ContentType = "text/plain";
                context.Response.ContentLength = "the password is hunter2".Length;
                await context.Response.WriteAsync("the password is hunter2");
                return;
            }
            var text = new StringBuilder($"path={context.Request.Path.Value}\n");
            foreach (var (name, value) in context.Request.Headers)
            {
                text.Append(name).Append(": ").Append(value.ToString()).Append('\n');
            }
            await context.Response.WriteAsync(text.ToString());
        });
        await app.StartAsync();
        return app;
    }

    /// <summary>The bound ports, in the order the listeners were declared.</summary>
    private static int[] Ports(WebApplication app) =>
        [.. app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a).Port)];

    private static X509Certificate2 SelfSigned()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new CertificateRequest("CN=unused bootstrap root", key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddHours(1));
    }

    public async ValueTask DisposeAsync()
    {
        await _sidecar.DisposeAsync();
        await _app.DisposeAsync();
    }
}
