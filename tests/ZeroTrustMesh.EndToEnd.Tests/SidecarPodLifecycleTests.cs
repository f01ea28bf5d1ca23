using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// What a pod needs of its sidecar, on the real executables: the health port kubelet and Prometheus reach from outside
/// the pod (readiness, metrics, the app's own probes rewritten by the injector — HTTP, TCP and gRPC against the demo
/// app's real grpc.health.v1 service), a drain on SIGTERM, and a projected service-account token as the proof of identity.
/// </summary>
public sealed class SidecarPodLifecycleTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task The_health_port_answers_readiness_metrics_and_the_apps_rewritten_probes()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var policy = await controlPlane.AllowNamespaceAsync("orders");
        var orders = await DemoApp.StartAsync(_mesh, "orders");
        var closed = ClosedPort();
        var probes = $$$"""
            {
              "/app-health/orders/livez": {"httpGet": {"path": "/status/204?from=kubelet", "port": {{{orders.HttpPort}}}}, "timeoutSeconds": 10},
              "/app-health/orders/readyz": {"httpGet": {"path": "/status/503", "port": {{{orders.HttpPort}}}}, "timeoutSeconds": 10},
              "/app-health/orders/startupz": {"tcpSocket": {"port": {{{orders.TcpPort}}}}, "timeoutSeconds": 10},
              "/app-health/grpc/livez": {"grpc": {"port": {{{orders.GrpcPort}}}}, "timeoutSeconds": 10},
              "/app-health/grpc/readyz": {"grpc": {"port": {{{orders.GrpcPort}}}, "service": "ztm.v1.Echo"}, "timeoutSeconds": 10},
              "/app-health/grpc/startupz": {"grpc": {"port": {{{orders.GrpcPort}}}, "service": "no.such.Service"}, "timeoutSeconds": 10},
              "/app-health/gone/livez": {"tcpSocket": {"port": {{{closed}}}}}
            }
            """;
        var sidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "orders"), "sidecar-orders",
            new Dictionary<string, string> { ["ZTM_APP_PROBES"] = probes }, [.. orders.SidecarArguments, "--health-port", "0"]);
        var line = await sidecar.Process.WaitForLineAsync("ztm-sidecar: health listening on port ");
        Assert.Contains("7 app probe(s)", line, StringComparison.Ordinal);
        using var health = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{HealthPort(line)}"), Timeout = Mesh.Timeout };

        await sidecar.WaitForIdentityAsync();
        await sidecar.WaitForPolicyAsync(policy);
        Assert.Equal((HttpStatusCode.OK, "ready\n"), await GetAsync(health, "/healthz/ready"));
        var (metricsStatus, metrics) = await GetAsync(health, "/metrics");
        Assert.Equal(HttpStatusCode.OK, metricsStatus);
        Assert.Contains("ztm_", metrics, StringComparison.Ordinal);

        // Each probe answers with what the app said (HTTP) or whether it is up (TCP, gRPC).
        Assert.Equal(HttpStatusCode.NoContent, (await GetAsync(health, "/app-health/orders/livez")).Status);
        Assert.Equal((HttpStatusCode.ServiceUnavailable, "the app answered 503 on /status/503\n"), await GetAsync(health, "/app-health/orders/readyz"));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(health, "/app-health/orders/startupz")).Status);
        Assert.Equal((HttpStatusCode.OK, "service '' is SERVING\n"), await GetAsync(health, "/app-health/grpc/livez"));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(health, "/app-health/grpc/readyz")).Status);
        var (unknownStatus, unknown) = await GetAsync(health, "/app-health/grpc/startupz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, unknownStatus);
        Assert.Contains("grpc-status 5", unknown, StringComparison.Ordinal); // NOT_FOUND: the app knows no such service
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await GetAsync(health, "/app-health/gone/livez")).Status);

        // Nothing else: what the sidecar holds stays on the loopback admin port.
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync(health, "/app-health/nobody/livez")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync(health, "/config_dump")).Status);
        using var post = await health.PostAsync("/healthz/ready", null);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
    }

    [Fact]
    public async Task A_sidecar_without_a_certificate_is_not_ready_on_the_health_port()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var token = await controlPlane.MintTokenAsync("shop", "orders");
        await controlPlane.Process.StopAsync(); // the sidecar cannot get a certificate: fail closed, say why
        var sidecar = await _mesh.StartSidecarAsync(controlPlane, token, "sidecar-orders", "--health-port", "0");
        var line = await sidecar.Process.WaitForLineAsync("ztm-sidecar: health listening on port ");
        using var health = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{HealthPort(line)}"), Timeout = Mesh.Timeout };
        Assert.Equal((HttpStatusCode.ServiceUnavailable, "not ready: no certificate yet\n"), await GetAsync(health, "/healthz/ready"));
    }

    [Fact]
    public async Task A_sidecar_stopped_with_SIGTERM_finishes_requests_in_flight_refuses_new_connections_and_exits_0()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };

        var inFlight = http.GetAsync($"http://orders:{orders.HttpPort}/slow/8000");
        await orders.Process.WaitForLineAsync("orders: /slow/8000 started");
        using (var term = System.Diagnostics.Process.Start("kill", ["-TERM", ordersSidecar.Process.Pid.ToString(CultureInfo.InvariantCulture)]))
        {
            await term.WaitForExitAsync();
        }

        // Draining: a new connection is refused while the request already in flight goes on.
        var signalled = System.Diagnostics.Stopwatch.StartNew();
        await WaitUntilRefusedAsync(ordersSidecar.Inbound);
        output.WriteLine($"new connections refused {signalled.ElapsedMilliseconds} ms after SIGTERM");
        Assert.False(inFlight.IsCompleted, "the request in flight ended before the drain was observed");

        using var response = await inFlight;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("\"path\":\"/slow/8000\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(0, await ordersSidecar.Process.Exited.WaitAsync(Mesh.Timeout));
    }

    [Fact]
    public async Task A_service_account_token_file_is_the_proof_and_a_standalone_control_plane_refuses_it_clearly()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var tokenFile = Path.Combine(_mesh.Root, "sa-token");
        await File.WriteAllTextAsync(tokenFile, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n");
        var process = _mesh.Track(MeshProcess.Start("sidecar-sa", Executables.Sidecar,
            ["--control-plane", controlPlane.Address.ToString(), "--trust-bundle", controlPlane.BundlePath, "--service-account-token-file", tokenFile,
                "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0"], output, _mesh.Environment));

        // The token reached the control plane as a service-account token (not a join token), which needs Kubernetes.
        var refused = await process.WaitForLineAsync($"service-account token {tokenFile} refused by the control plane, exiting: ");
        Assert.Contains("does not accept a service account token", refused, StringComparison.Ordinal);
        Assert.DoesNotContain("eyJhbGciOiJSUzI1NiJ9", string.Join('\n', process.Lines), StringComparison.Ordinal);
        Assert.Equal(1, await process.Exited.WaitAsync(Mesh.Timeout));
    }

    [Fact]
    public async Task A_join_token_and_a_service_account_token_together_or_bad_app_probes_stop_the_sidecar_before_it_starts()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var both = _mesh.Track(MeshProcess.Start("sidecar-both", Executables.Sidecar,
            ["--control-plane", controlPlane.Address.ToString(), "--trust-bundle", controlPlane.BundlePath, "--join-token", "ztmjt_x",
                "--service-account-token-file", "/nonexistent"], output, _mesh.Environment));
        Assert.Equal(2, await both.Exited.WaitAsync(Mesh.Timeout));
        Assert.Contains(both.Lines, l => l == "ztm-sidecar: --service-account-token-file and a join token are alternatives: give one");

        var badProbes = _mesh.Track(MeshProcess.Start("sidecar-probes", Executables.Sidecar,
            ["--control-plane", controlPlane.Address.ToString(), "--trust-bundle", controlPlane.BundlePath, "--join-token", "ztmjt_x"], output,
            _mesh.Environment.Concat([new("ZTM_APP_PROBES", """{"/app-health/a/livez": {"tcpSocket": {"port": "http"}}}""")]).ToDictionary()));
        Assert.Equal(2, await badProbes.Exited.WaitAsync(Mesh.Timeout));
        Assert.Contains(badProbes.Lines, l => l.StartsWith("ztm-sidecar: $ZTM_APP_PROBES is invalid: /app-health/a/livez.tcpSocket.port: must be a port number", StringComparison.Ordinal));
    }

    private static int HealthPort(string line) =>
        int.Parse(line["ztm-sidecar: health listening on port ".Length..].Split(' ')[0], CultureInfo.InvariantCulture);

    private static async Task<(HttpStatusCode Status, string Body)> GetAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static async Task WaitUntilRefusedAsync(IPEndPoint endpoint)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(6);
        while (DateTime.UtcNow < deadline)
        {
            using var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(endpoint);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset)
            {
                return; // reset: the connection reached the backlog as the listener closed
            }
            await Task.Yield(); // still listening: the signal has not been handled yet
        }
        Assert.Fail($"{endpoint} still accepted connections 6 s after SIGTERM");
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
