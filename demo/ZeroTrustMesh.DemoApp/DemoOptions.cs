using System.CommandLine;
using System.Net;
using ZeroTrustMesh.CommandLine;

namespace ZeroTrustMesh.DemoApp;

/// <summary>What ztm-demo-app is configured with; parsed and validated once at start.</summary>
internal sealed class DemoOptions
{
    /// <summary>The <c>--tcp-port</c> value that turns the TCP echo listener off.</summary>
    public const int Disabled = -1;

    public required string Name { get; init; }
    public required IPAddress ListenAddress { get; init; }
    public required int HttpPort { get; init; }
    public required int GrpcPort { get; init; }

    /// <summary><see cref="Disabled"/> when there is no TCP listener.</summary>
    public required int TcpPort { get; init; }

    public static RootCommand Command(Func<DemoOptions, CancellationToken, Task<int>> run)
    {
        var name = new Option<string>("--name") { Description = "Name the app reports in every echo", DefaultValueFactory = _ => "demo" };
        var listen = new Option<string>("--listen") { Description = "Address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var httpPort = new Option<int>("--http-port") { Description = "HTTP/1.1 and h2c echo port; 0 picks a free one", DefaultValueFactory = _ => 8080 };
        var grpcPort = new Option<int>("--grpc-port") { Description = "gRPC echo port (h2c, prior knowledge); 0 picks a free one", DefaultValueFactory = _ => 8081 };
        var tcpPort = new Option<int>("--tcp-port") { Description = "TCP echo port; 0 picks a free one, -1 turns it off", DefaultValueFactory = _ => 9000 };

        var command = new RootCommand("ZeroTrustMesh demo app: HTTP, gRPC and TCP echo behind the mesh's sidecars")
        {
            name, listen, httpPort, grpcPort, tcpPort,
            DemoToken.Command(),
        };
        command.SetAction((result, cancellation) =>
        {
            var app = result.GetValue(name)!;
            if (string.IsNullOrWhiteSpace(app))
            {
                return Fail("--name must not be empty");
            }
            if (!IPAddress.TryParse(result.GetValue(listen), out var address))
            {
                return Fail($"--listen '{result.GetValue(listen)}' is not an IP address");
            }
            foreach (var (option, min) in new[] { (httpPort, 0), (grpcPort, 0), (tcpPort, Disabled) })
            {
                if (result.GetValue(option) is var port && (port < min || port > 65535))
                {
                    return Fail($"{option.Name} must be between {min} and 65535");
                }
            }
            return run(new DemoOptions
            {
                Name = app,
                ListenAddress = address,
                HttpPort = result.GetValue(httpPort),
                GrpcPort = result.GetValue(grpcPort),
                TcpPort = result.GetValue(tcpPort),
            }, cancellation);
        });
        return command;
    }

    private static Task<int> Fail(string error)
    {
        Console.Error.WriteLine($"{DemoHost.Program}: {error}");
        return Task.FromResult(CommandLineOptions.UsageError);
    }
}
