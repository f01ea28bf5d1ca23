namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// The runtime's floor (issue 20): two <c>ztm-floor-relay</c> processes doing the transport part of the sidecar pair's
/// job with nothing but .NET's sockets and TLS: the client side takes plaintext and opens TLS 1.3 with a client SVID to
/// the server side, which requires a client certificate chained to the mesh CA and relays the bytes to the app. No HTTP
/// is parsed, so the app sees the caller's own connection protocol (its HTTP port detects HTTP/1.1 or h2c); a
/// connection in is a connection out, kept alive as long as the caller keeps it. What the sidecar costs beyond it is
/// HTTP, policy and telemetry — and whatever our relaying does worse.
/// </summary>
internal static class FloorRelayPair
{
    public static async Task<ProxyPair> StartAsync(PairSetup setup, string floorRelay, CancellationToken cancellation)
    {
        var dir = Directory.CreateDirectory(Path.Combine(setup.Root, "floor-pair")).FullName;
        await ProxyPair.WriteCertificatesAsync(setup, dir, "floor", cancellation);
        var clientPort = LoadHost.FreePort();
        var serverPort = LoadHost.FreePort();
        var server = StartServerSide(setup, dir, floorRelay, serverPort, "floor-server");
        await server.WaitForLineAsync("ztm-floor-relay: listening on", TimeSpan.FromSeconds(30));
        server.Quiet();
        var client = LoadProcess.Start("floor-client", floorRelay, ["--port", $"{clientPort}", "--upstream", $"127.0.0.1:{serverPort}",
            "--tls-client", Path.Combine(dir, "client.pem"), "--ca", Path.Combine(dir, "ca.pem")], setup.Environment);
        await client.WaitForLineAsync("ztm-floor-relay: listening on", TimeSpan.FromSeconds(30));
        client.Quiet();
        var extra = 0;
        var entry = new Uri($"http://127.0.0.1:{clientPort}{setup.HttpPath}");
        return new ProxyPair(client, server, entry, entry, null, new Uri($"https://127.0.0.1:{serverPort}{setup.HttpPath}"),
            _ =>
            {
                var port = LoadHost.FreePort();
                var process = StartServerSide(setup, dir, floorRelay, port, $"floor-server-{++extra}");
                return Task.FromResult((process, new Uri($"https://127.0.0.1:{port}{setup.HttpPath}")));
            });
    }

    private static LoadProcess StartServerSide(PairSetup setup, string dir, string floorRelay, int port, string name) =>
        LoadProcess.Start(name, floorRelay, ["--port", $"{port}", "--upstream", $"127.0.0.1:{setup.AppHttpPort}",
            "--tls-server", Path.Combine(dir, "server.pem"), "--ca", Path.Combine(dir, "ca.pem")], setup.Environment);
}
