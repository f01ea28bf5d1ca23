using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using ZeroTrustMesh.DemoApp.GrpcEcho;
using ZeroTrustMesh.DemoApp.HttpEcho;
using ZeroTrustMesh.DemoApp.TcpEcho;
using ZeroTrustMesh.CommandLine;

namespace ZeroTrustMesh.DemoApp;

/// <summary>
/// The composition root. Two hosts, so each port serves only what it is for:
/// 1. the HTTP host: the HTTP/1.1 + h2c echo listener (one port, see <see cref="ProtocolDetection"/>), and the raw TCP echo listener (a Kestrel connection handler);
/// 2. the gRPC host: h2c (prior knowledge) only, the Echo service and nothing else.
/// Once both are bound it prints one line per listener, with the real port, for tests and scripts to wait on.
/// </summary>
internal static class DemoHost
{
    public const string Program = "ztm-demo-app";

    public static async Task<int> RunAsync(DemoOptions options, CancellationToken cancellation)
    {
        ListenOptions? httpListener = null;
        ListenOptions? tcpListener = null;
        ListenOptions? grpcListener = null;

        var httpBuilder = CreateBuilder(options);
        // Registered after Kestrel's socket transport, so Kestrel asks it first; it binds only the detected end points.
        httpBuilder.Services.AddSingleton<ProtocolDetection>();
        httpBuilder.Services.AddSingleton<IConnectionListenerFactory>(sp => sp.GetRequiredService<ProtocolDetection>());
        httpBuilder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Large-body tests stream gigabytes through the mesh; the app counts, never buffers.
            kestrel.Limits.MaxRequestBodySize = null;
            // An L4 TLS terminator in front (the benchmarks' floor relay) passes the client's HTTP/2 `:scheme https` through
            // to this cleartext port; Kestrel refuses that mismatch unless told it is expected.
            kestrel.AllowAlternateSchemes = true;
            // HTTP/1.1 and h2c prior knowledge on one cleartext port: see ProtocolDetection for why and how.
            kestrel.Listen(ProtocolDetection.Http1, listen => listen.Protocols = HttpProtocols.Http1);
            kestrel.Listen(ProtocolDetection.Http2, listen => listen.Protocols = HttpProtocols.Http2);
            kestrel.Listen(options.ListenAddress, options.HttpPort, listen =>
            {
                listen.UseConnectionHandler<ProtocolDetector>();
                httpListener = listen;
            });
            if (options.TcpPort != DemoOptions.Disabled)
            {
                kestrel.Listen(options.ListenAddress, options.TcpPort, listen =>
                {
                    listen.UseConnectionHandler<TcpEchoHandler>();
                    tcpListener = listen;
                });
            }
        });
        await using var http = httpBuilder.Build();
        http.MapEcho(options.Name);

        var grpcBuilder = CreateBuilder(options);
        grpcBuilder.Services.AddGrpc(o => o.EnableDetailedErrors = false);
        grpcBuilder.Services.AddSingleton(_ =>
        {
            // The whole server ("") and the echo service are SERVING; any other name is NOT_FOUND, as the protocol says.
            var health = new Grpc.HealthCheck.HealthServiceImpl();
            health.SetStatus("", Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving);
            health.SetStatus(Proto.V1.Echo.Descriptor.FullName, Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving);
            return health;
        });
        grpcBuilder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(options.ListenAddress, options.GrpcPort, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                grpcListener = listen;
            });
        });
        await using var grpc = grpcBuilder.Build();
        grpc.MapGrpcService<EchoService>();
        grpc.MapGrpcService<Grpc.HealthCheck.HealthServiceImpl>();

        try
        {
            await http.StartAsync(cancellation);
            await grpc.StartAsync(cancellation);
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"{Program}: cannot listen on {options.ListenAddress}: {e.Message}");
            return 1;
        }

        // Kestrel writes the bound end point back into the listen options, so port 0 shows the real port.
        Console.Out.WriteLine($"{Program}: http listening on http://{httpListener!.IPEndPoint}");
        Console.Out.WriteLine($"{Program}: grpc listening on http://{grpcListener!.IPEndPoint}");
        if (tcpListener is not null)
        {
            Console.Out.WriteLine($"{Program}: tcp listening on {tcpListener.IPEndPoint}");
        }
        Console.Out.Flush();

        await Task.WhenAny(http.WaitForShutdownAsync(cancellation), grpc.WaitForShutdownAsync(cancellation));
        await Task.WhenAll(http.StopAsync(CancellationToken.None), grpc.StopAsync(CancellationToken.None));
        return 0;
    }

    private static WebApplicationBuilder CreateBuilder(DemoOptions options)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.AddMeshConsole();
        builder.Services.AddSingleton(options);
        return builder;
    }
}
