namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// The HAProxy pair, configured in the run's temporary directory: the client side takes plain HTTP/1.1 (and h2c on a
/// second port, <c>proto h2</c>) and opens TLS 1.3 with its SVID as client certificate to the server side (HTTP/2 by
/// ALPN), verifying the server's chain against the mesh CA; the server side requires and verifies client certificates
/// against the same CA, sets the identity header and sends plain HTTP/1.1 to the app (gRPC: h2c to the app's gRPC port).
/// Both run in the foreground (<c>-db</c>) and are stopped by PID.
/// </summary>
internal static class HaproxyPair
{
    private const string Common = """
        global
            ssl-default-bind-options ssl-min-ver TLSv1.3
            ssl-default-server-options ssl-min-ver TLSv1.3
        defaults
            mode http
            timeout connect 2s
            timeout client 30s
            timeout server 30s
            timeout http-keep-alive 30s

        """;

    public static async Task<ProxyPair> StartAsync(PairSetup setup, CancellationToken cancellation)
    {
        var dir = Directory.CreateDirectory(Path.Combine(setup.Root, "haproxy")).FullName;
        await ProxyPair.WriteCertificatesAsync(setup, dir, "haproxy", cancellation);
        var clientPort = LoadHost.FreePort();
        var h2Port = LoadHost.FreePort();
        var serverPort = LoadHost.FreePort();
        var clientConfig = Path.Combine(dir, "client.cfg");
        await File.WriteAllTextAsync(clientConfig, Common + $"""
            frontend outbound
                bind 127.0.0.1:{clientPort}
                bind 127.0.0.1:{h2Port} proto h2
                default_backend orders
            backend orders
                http-reuse always
                server orders 127.0.0.1:{serverPort} ssl crt {dir}/client.pem ca-file {dir}/ca.pem verify required alpn h2

            """, cancellation);
        var server = await StartServerSideAsync(setup, dir, serverPort, "haproxy-server", cancellation);
        var client = LoadProcess.Start("haproxy-client", "haproxy", ["-db", "-f", clientConfig], setup.Environment);
        client.Quiet();
        await LoadHost.WaitForPortAsync(client, h2Port, TimeSpan.FromSeconds(15));
        var extra = 0;
        return new ProxyPair(client, server, new Uri($"http://127.0.0.1:{clientPort}{setup.HttpPath}"), new Uri($"http://127.0.0.1:{h2Port}{setup.HttpPath}"), null,
            new Uri($"https://127.0.0.1:{serverPort}{setup.HttpPath}"),
            async ct =>
            {
                var port = LoadHost.FreePort();
                var process = await StartServerSideAsync(setup, dir, port, $"haproxy-server-{++extra}", ct, waitForPort: false);
                return (process, new Uri($"https://127.0.0.1:{port}{setup.HttpPath}"));
            });
    }

    private static async Task<LoadProcess> StartServerSideAsync(PairSetup setup, string dir, int port, string name, CancellationToken cancellation, bool waitForPort = true)
    {
        var config = Path.Combine(dir, name + ".cfg");
        await File.WriteAllTextAsync(config, Common + $"""
            frontend inbound
                bind 127.0.0.1:{port} ssl crt {dir}/server.pem ca-file {dir}/ca.pem verify required alpn h2,http/1.1
                http-request set-header x-ztm-client-identity %[ssl_c_s_dn]
                use_backend grpc if {"{"} path_beg {setup.GrpcPath[..(setup.GrpcPath.LastIndexOf('/') + 1)]} {"}"}
                default_backend app
            backend app
                server app 127.0.0.1:{setup.AppHttpPort}
            backend grpc
                server app 127.0.0.1:{setup.AppGrpcPort} proto h2

            """, cancellation);
        var server = LoadProcess.Start(name, "haproxy", ["-db", "-f", config], setup.Environment);
        server.Quiet();
        if (waitForPort)
        {
            await LoadHost.WaitForPortAsync(server, port, TimeSpan.FromSeconds(15));
        }
        return server;
    }
}
