namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// The bare-stack pair: two <c>ztm-bare-proxy</c> processes doing the sidecar pair's job with the stack the sidecar is
/// built on (Kestrel, YARP's forwarder, SocketsHttpHandler, Polly, prometheus-net) and none of ZeroTrustMesh's code.
/// The client side takes plain HTTP/1.1 (and h2c on a second port) and forwards over HTTP/2 with TLS 1.3 and its SVID
/// as client certificate; the server side requires client certificates chaining to the mesh CA and forwards HTTP/1.1 to
/// the app (gRPC: h2c to the app's gRPC port), as the HAProxy pair does. It is the capacity and CPU floor of that stack:
/// what the sidecar costs beyond it is ours (identity checks, registry, authorization, metrics, access log).
/// </summary>
internal static class BareStackPair
{
    public static async Task<ProxyPair> StartAsync(PairSetup setup, string bareProxy, CancellationToken cancellation)
    {
        var dir = Directory.CreateDirectory(Path.Combine(setup.Root, "bare-pair")).FullName;
        await ProxyPair.WriteCertificatesAsync(setup, dir, "bare", cancellation);
        var clientPort = LoadHost.FreePort();
        var h2Port = LoadHost.FreePort();
        var serverPort = LoadHost.FreePort();
        var server = StartServerSide(setup, dir, bareProxy, serverPort, "bare-server");
        await server.WaitForLineAsync("ztm-bare-proxy: listening on", TimeSpan.FromSeconds(30));
        server.Quiet();
        var client = LoadProcess.Start("bare-client", bareProxy, ["--port", $"{clientPort}", "--h2c-port", $"{h2Port}", "--upstream", $"https://127.0.0.1:{serverPort}",
            "--grpc", $"https://127.0.0.1:{serverPort}", "--tls-client", Path.Combine(dir, "client.pem"), "--ca", Path.Combine(dir, "ca.pem")], setup.Environment);
        await client.WaitForLineAsync("ztm-bare-proxy: listening on", TimeSpan.FromSeconds(30));
        client.Quiet();
        var extra = 0;
        return new ProxyPair(client, server, new Uri($"http://127.0.0.1:{clientPort}{setup.HttpPath}"), new Uri($"http://127.0.0.1:{h2Port}{setup.HttpPath}"), null,
            new Uri($"https://127.0.0.1:{serverPort}{setup.HttpPath}"),
            _ =>
            {
                var port = LoadHost.FreePort();
                var process = StartServerSide(setup, dir, bareProxy, port, $"bare-server-{++extra}");
                return Task.FromResult((process, new Uri($"https://127.0.0.1:{port}{setup.HttpPath}")));
            });
    }

    /// <summary>Started, not awaited: the pair waits for its listening line; exec → ready times the first mTLS answer itself.</summary>
    private static LoadProcess StartServerSide(PairSetup setup, string dir, string bareProxy, int port, string name) =>
        LoadProcess.Start(name, bareProxy, ["--port", $"{port}", "--upstream", $"http://127.0.0.1:{setup.AppHttpPort}", "--grpc", $"http://127.0.0.1:{setup.AppGrpcPort}",
            "--tls-server", Path.Combine(dir, "server.pem"), "--ca", Path.Combine(dir, "ca.pem")], setup.Environment);
}
