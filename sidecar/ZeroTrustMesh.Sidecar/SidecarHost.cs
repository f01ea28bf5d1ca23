using System.Net;
using System.Net.Quic;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using ZeroTrustMesh.Sidecar.Admin;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Outbound;
using ZeroTrustMesh.Sidecar.Config;
using ZeroTrustMesh.Sidecar.Registry;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;
using ZeroTrustMesh.CommandLine;

namespace ZeroTrustMesh.Sidecar;

/// <summary>Which listener a connection came in on; set by each listener's connection middleware, requests are dispatched on it.</summary>
internal sealed class ListenerRole
{
    public static readonly ListenerRole Admin = new();
    public static readonly ListenerRole Inbound = new();
    public static readonly ListenerRole Outbound = new();
    public static readonly ListenerRole Health = new();

    private ListenerRole()
    {
    }
}

/// <summary>
/// The composition root: identity first (everything depends on it), then the registry, then the listeners —
/// admin (loopback), inbound (mTLS from other sidecars; plaintext too for a PERMISSIVE workload), outbound
/// (plaintext from the local app), and the health port for kubelet and Prometheus when asked for.
/// </summary>
internal static class SidecarHost
{
    public static async Task<int> RunAsync(SidecarOptions options, CancellationToken cancellation)
    {
        // The slim builder, not the empty one: CreateEmptyBuilder + UseKestrelCore + AddRoutingCore idled 0.6 MiB lower
        // but cost more CPU per request at capacity in back-to-back runs (0.096/0.109 vs 0.082/0.095 s per 1000
        // requests, frontend/orders, 21:23-21:31 UTC), for reasons not found yet (benchmarks/README.md).
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.AddMeshConsole();
        builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel", LogLevel.Error);
        builder.Logging.AddFilter("Yarp", LogLevel.Error);

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton(sp => new IdentityState(sp.GetRequiredService<TimeProvider>(), options.BootstrapBundle, sp.GetRequiredService<ILogger<IdentityState>>()));
        services.AddSingleton<IIdentityIssuer, GrpcIdentityIssuer>();
        services.AddSingleton<CertificateRotator>();
        services.AddHostedService(sp => sp.GetRequiredService<CertificateRotator>());
        services.AddSingleton<MeshRegistryClient>();
        services.AddHostedService(sp => sp.GetRequiredService<MeshRegistryClient>());
        // The inbound listener and its stages, one per policy kind this sidecar enforces (deny everything until the
        // first config arrives), then the config stream that feeds them.
        services.AddInbound();
        services.AddSingleton<ConfigWatcher>();
        services.AddHostedService(sp => sp.GetRequiredService<ConfigWatcher>());
        services.AddSingleton<SidecarMetrics>();
        services.AddSingleton<Health.Readiness>();
        services.AddSingleton(options.AppProbes);
        services.AddSingleton<Health.AppProber>();
        services.AddSingleton<Health.HealthPort>();
        services.AddSingleton<RefusalLog>();
        services.AddSingleton<MemoryTrimmer>();
        services.AddHostedService(sp => sp.GetRequiredService<MemoryTrimmer>());
        services.AddSingleton<AccessLog>();
        // What the inbound path saw (its buffer is registered with it), sent to the control plane.
        services.AddSingleton<Observations.ObservationReporter>();
        services.AddHostedService(sp => sp.GetRequiredService<Observations.ObservationReporter>());
        services.AddSingleton<DecisionLog.CheckpointSender>();
        if (options.DecisionLog?.Export is not null)
        {
            services.AddSingleton<DecisionLog.OtlpExport>(); // --decision-log-otlp; the writer takes it when it is there
        }
        services.AddSingleton<DecisionLog.DecisionLogWriter>();
        services.AddHostedService(sp => sp.GetRequiredService<DecisionLog.DecisionLogWriter>()); // on stop: the queue written, a last checkpoint sent
        services.AddHttpForwarder();
        services.AddSingleton<DestinationClients>();
        services.AddSingleton<OutboundProxy>();
        services.AddSingleton<OutboundTcp>();
        services.AddSingleton<OutboundConnectionMiddleware>();

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(10);
            kestrel.Limits.MaxRequestHeadersTotalSize = 32 * 1024;
            var sp = kestrel.ApplicationServices;

            // Admin: loopback only; it tells what identity this pod holds.
            kestrel.Listen(IPAddress.Loopback, options.AdminPort, listen => listen.Use(Tag(ListenerRole.Admin)));

            // Inbound: mTLS from other sidecars (HTTP/2, or TCP by ALPN). No valid certificate of ours, or none of
            // theirs, means no handshake. Plaintext only while the workload's PeerAuthentication is PERMISSIVE: see
            // InboundConnectionMiddleware for how a connection is told apart and which pipeline it gets.
            kestrel.Listen(options.InboundEndpoint, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                var state = sp.GetRequiredService<IdentityState>();
                var refusals = sp.GetRequiredService<RefusalLog>();
                var connections = sp.GetRequiredService<InboundConnectionMiddleware>();
                listen.Use(connections.BeforeTls);
                listen.UseHttps(new TlsHandshakeCallbackOptions
                {
                    HandshakeTimeout = TimeSpan.FromSeconds(10),
                    OnConnection = context => ValueTask.FromResult(MeshTls.ServerOptions(state, refusals, context.Connection)),
                });
                listen.Use(connections.AfterTls);
            });

            // Outbound: plaintext from the local app, HTTP/1.1, h2c, CONNECT or transparently redirected.
            kestrel.Listen(IPAddress.Loopback, options.OutboundPort, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                var middleware = sp.GetRequiredService<OutboundConnectionMiddleware>();
                listen.Use(next => connection =>
                {
                    connection.Features.Set(ListenerRole.Outbound);
                    return middleware.OnConnectionAsync(connection, next);
                });
            });

            // Health: kubelet and Prometheus reach the pod from outside it, so every address; plain HTTP, and nothing
            // on it tells what the sidecar holds. Listed last: the addresses below are read in this order.
            if (options.HealthPort is { } healthPort)
            {
                kestrel.ListenAnyIP(healthPort, listen => listen.Use(Tag(ListenerRole.Health)));
            }
        });

        await using var app = builder.Build();
        var inbound = app.Services.GetRequiredService<InboundProxy>();
        var outbound = app.Services.GetRequiredService<OutboundProxy>();
        // Only with a health port: its probe client is not built for sidecars that have none.
        var health = options.HealthPort is null ? null : app.Services.GetRequiredService<Health.HealthPort>();
        app.Use((context, next) =>
        {
            var role = context.Features.Get<ListenerRole>();
            return role == ListenerRole.Inbound ? inbound.HandleAsync(context)
                : role == ListenerRole.Outbound ? outbound.HandleAsync(context)
                : role == ListenerRole.Admin ? next(context)
                : role == ListenerRole.Health ? health!.HandleAsync(context)
                : throw new InvalidOperationException("a request from no known listener");
        });
        // Routing after the dispatch, so only admin requests are matched against routes: without this call the web
        // host puts routing first and every proxied request pays for a route lookup it does not use.
        app.UseRouting();
        app.MapAdmin();

        var logger = app.Services.GetRequiredService<ILogger<SidecarOptions>>();
        if (!QuicListener.IsSupported)
        {
            SidecarLog.Http3Unavailable(logger);
        }
        try
        {
            await app.StartAsync(cancellation);
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"ztm-sidecar: cannot listen: {e.Message}");
            return 1;
        }

        // When the sidecar is first ready, hand back what start-up left behind.
        var trimmer = app.Services.GetRequiredService<MemoryTrimmer>();
        _ = app.Services.GetRequiredService<ConfigWatcher>().FirstSnapshot.ContinueWith(_ => trimmer.ReleaseStartupMemory(),
            CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);

        var addresses = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a.Replace("[::]", "0.0.0.0", StringComparison.Ordinal))).ToList();
        // Listen() was called admin, inbound, outbound: the bound addresses come back in that order.
        var admin = addresses[0];
        options.InboundEndpoint = new IPEndPoint(options.InboundEndpoint.Address, addresses[1].Port);
        var outboundPort = addresses[2].Port;
        Console.Out.WriteLine($"ztm-sidecar: admin listening on http://127.0.0.1:{admin.Port} (control plane {options.ControlPlane})");
        Console.Out.WriteLine($"ztm-sidecar: inbound listening on {options.InboundEndpoint} (mTLS; plaintext only when PERMISSIVE)");
        Console.Out.WriteLine($"ztm-sidecar: outbound listening on 127.0.0.1:{outboundPort}");
        if (options.HealthPort is not null)
        {
            Console.Out.WriteLine($"ztm-sidecar: health listening on port {addresses[3].Port} (/healthz/ready, /metrics, {options.AppProbes.ByPath.Count} app probe(s))");
        }
        Console.Out.Flush();

        await app.WaitForShutdownAsync(cancellation);
        // A refused join token stops the sidecar; say so in the exit code.
        return app.Services.GetRequiredService<CertificateRotator>().FirstIdentity.IsFaulted ? 1 : 0;
    }

    private static Func<ConnectionDelegate, ConnectionDelegate> Tag(ListenerRole role) => next => connection =>
    {
        connection.Features.Set(role);
        return next(connection);
    };
}
