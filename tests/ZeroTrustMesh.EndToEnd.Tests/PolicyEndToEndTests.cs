using System.Net;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Authorization through real processes: no policy means deny; an applied policy is enforced on the next request and
/// its version shows in <c>ztmctl status</c>; invalid policy is refused whole; DENY wins; <c>ztmctl policy test</c>
/// agrees with the sidecar; the sidecar keeps enforcing when the control plane is gone.
/// </summary>
public sealed class PolicyEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string OrdersFromFrontend = """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata:
          name: orders-from-frontend
          namespace: shop
        spec:
          selector:
            service: orders
          action: ALLOW
          rules:
            - from:
                - source:
                    principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
              to:
                - operation:
                    methods: ["GET"]
                    paths: ["/orders/*"]
        """;

    private const string NoSecrets = """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata:
          name: no-secrets
          namespace: shop
        spec:
          selector:
            service: orders
          action: DENY
          rules:
            - to:
                - operation:
                    paths: ["/orders/secret"]
        """;

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task No_policy_denies_then_an_applied_policy_is_enforced_on_the_next_request_and_shows_in_status()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane, allowNamespace: false);
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}";

        // Default deny: no ALLOW policy for orders.
        await ordersSidecar.WaitForPolicyAsync("v0");
        using (var denied = await http.GetAsync($"{url}/orders/1"))
        {
            Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
            Assert.Contains("no ALLOW policy for this workload", await denied.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // ztmctl apply, and the very next request is allowed.
        var file = Path.Combine(_mesh.Root, "orders.yaml");
        await File.WriteAllTextAsync(file, OrdersFromFrontend);
        var (exit, applied, _) = await _mesh.ZtmctlAsync("apply", "-f", file);
        Assert.Equal(0, exit);
        Assert.Contains("AuthorizationPolicy/shop/orders-from-frontend created", applied, StringComparison.Ordinal);
        var version = applied.Split('\n').Single(l => l.StartsWith("policy version ", StringComparison.Ordinal))["policy version ".Length..].Trim();
        await ordersSidecar.WaitForPolicyAsync(version);

        using (var allowed = await http.GetAsync($"{url}/orders/1"))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
            Assert.Equal(DataPlaneFixture.FrontendId, JsonDocument.Parse(await allowed.Content.ReadAsStringAsync()).RootElement.GetProperty("caller").GetString());
        }
        using (var wrongMethod = await http.PostAsync($"{url}/orders/1", new StringContent("{}")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, wrongMethod.StatusCode);
            Assert.Contains("no ALLOW policy matched", await wrongMethod.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // The denial is explained in the access log and counted by policy.
        await ordersSidecar.Process.WaitForLineAsync(l => l.Contains("\"status\":403", StringComparison.Ordinal) && l.Contains("no ALLOW policy matched", StringComparison.Ordinal), "403 access log line");
        var metrics = await Mesh.MetricsAsync(ordersSidecar);
        Assert.True(Mesh.Sample(metrics, "ztm_authorization_decisions_total", ("decision", "allow"), ("policy", "shop/orders-from-frontend")) >= 1, metrics);

        // ztmctl status: the orders sidecar has applied that version.
        var (statusExit, status, _) = await _mesh.ZtmctlAsync("status", "-o", "json");
        Assert.Equal(0, statusExit);
        var sidecars = JsonDocument.Parse(status).RootElement.GetProperty("sidecars").EnumerateArray().ToList();
        var ordersStatus = sidecars.Single(s => s.GetProperty("spiffeId").GetString() == DataPlaneFixture.OrdersId);
        Assert.Equal(version, ordersStatus.GetProperty("applied").GetString());
        Assert.True(ordersStatus.GetProperty("connected").GetBoolean());
        Assert.Contains(sidecars, s => s.GetProperty("spiffeId").GetString() == DataPlaneFixture.FrontendId);
    }

    /// <summary>A GET with the request target exactly as given, through the sidecar's outbound port; returns the status line.</summary>
    private static async Task<string> RawGetAsync(Sidecar sidecar, string host, string target)
    {
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await socket.ConnectAsync(sidecar.Outbound, timeout.Token);
        await socket.SendAsync(System.Text.Encoding.ASCII.GetBytes($"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"), System.Net.Sockets.SocketFlags.None, timeout.Token);
        var response = System.Text.Encoding.ASCII.GetString(await EchoClient.ReceiveToEnd(socket, timeout.Token));
        return response.Split("\r\n")[0];
    }

    [Fact]
    public async Task A_snapshot_the_sidecar_cannot_apply_is_nacked_shown_in_status_and_the_last_good_one_stays()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane, allowNamespace: false);
        var good = await controlPlane.ApplyPolicyAsync(OrdersFromFrontend);
        await ordersSidecar.WaitForPolicyAsync(good);

        // The control plane checks an inline JWKS's shape; the sidecar must turn its keys into keys, and cannot.
        var bad = await controlPlane.ApplyPolicyAsync("""
            apiVersion: security.ztm.dev/v1
            kind: RequestAuthentication
            metadata:
              name: orders-jwt
              namespace: shop
            spec:
              selector:
                service: orders
              jwtRules:
                - issuer: https://issuer.test
                  jwks: '{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"not-a-point","y":"not-a-point"}]}'
            """);
        await ordersSidecar.Process.WaitForLineAsync($"config {bad} refused (NACK), still enforcing {good}");

        // ztmctl status shows the NACK and the version still applied.
        var (_, status, _) = await _mesh.ZtmctlAsync("status", "-o", "json");
        var ordersStatus = JsonDocument.Parse(status).RootElement.GetProperty("sidecars").EnumerateArray()
            .Single(s => s.GetProperty("spiffeId").GetString() == DataPlaneFixture.OrdersId && s.GetProperty("connected").GetBoolean());
        Assert.Equal(good, ordersStatus.GetProperty("applied").GetString());
        Assert.Equal(bad, ordersStatus.GetProperty("sent").GetString());
        Assert.Contains("jwks", ordersStatus.GetProperty("nack").GetString(), StringComparison.OrdinalIgnoreCase);

        // And the last good policy is still what decides.
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        using var allowed = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/7");
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
    }

    /// <summary>frontend → orders with no policy yet (v0: every call denied); <paramref name="ordersSidecarArgs"/> go to the orders sidecar.</summary>
    private async Task<(ControlPlane ControlPlane, DemoApp Orders, Sidecar OrdersSidecar, Sidecar Frontend)> StartWithoutPolicyAsync(params string[] ordersSidecarArgs)
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var orders = await DemoApp.StartAsync(_mesh, "orders");
        var ordersSidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "orders"), "sidecar-orders",
            [.. orders.SidecarArguments, .. ordersSidecarArgs]);
        var frontend = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "frontend"), "sidecar-frontend");
        await ordersSidecar.Process.WaitForLineAsync("registered with the control plane ");
        await ordersSidecar.WaitForPolicyAsync("v0");
        await frontend.WaitForIdentityAsync();
        return (controlPlane, orders, ordersSidecar, frontend);
    }

    [Fact]
    public async Task With_explain_denials_off_the_caller_learns_nothing_and_the_access_log_still_says_why()
    {
        var (_, orders, ordersSidecar, frontend) = await StartWithoutPolicyAsync("--explain-denials", "false");

        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        using var denied = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/1");
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        Assert.Equal("Forbidden\n", await denied.Content.ReadAsStringAsync());
        await ordersSidecar.Process.WaitForLineAsync(l => l.Contains("\"status\":403", StringComparison.Ordinal) && l.Contains("no ALLOW policy for this workload", StringComparison.Ordinal), "the reason in the access log");
    }

    [Fact]
    public async Task With_the_access_log_off_requests_are_still_counted_and_no_access_line_is_written()
    {
        var (controlPlane, orders, ordersSidecar, frontend) = await StartWithoutPolicyAsync("--access-log", "off");

        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        using var denied = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/1");
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        Assert.Equal(1, Mesh.Sample(await Mesh.MetricsAsync(ordersSidecar), "ztm_requests_total", ("direction", "inbound"), ("code", "403")));
        // The caller's sidecar logs as by default; the line is how we know the request went through both.
        await frontend.Process.WaitForLineAsync(l => l.Contains("\"log\":\"access\"", StringComparison.Ordinal) && l.Contains("/orders/1", StringComparison.Ordinal), "the frontend's access line");

        // A later line on the orders sidecar's stdout: anything the request had written came before it.
        await controlPlane.AllowNamespaceAsync("orders");
        await ordersSidecar.WaitForPolicyAsync("v1");
        Assert.DoesNotContain(ordersSidecar.Process.Lines, l => l.Contains("\"log\":\"access\"", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Sidecar_refuses_an_unknown_access_log_mode_with_one_line_and_exit_code_2()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var tokenFile = Path.Combine(_mesh.Root, "token");
        await File.WriteAllTextAsync(tokenFile, await controlPlane.MintTokenAsync("shop", "orders"));
        var sidecar = _mesh.Track(MeshProcess.Start("sidecar", Executables.Sidecar,
            ["--control-plane", controlPlane.Address.ToString(), "--trust-bundle", controlPlane.BundlePath, "--join-token-file", tokenFile, "--access-log", "xml"],
            _mesh.Output, _mesh.Environment));
        await sidecar.WaitForLineAsync("ztm-sidecar: --access-log 'xml' must be json or off");
        Assert.Equal(2, await sidecar.Exited.WaitAsync(Mesh.Timeout));
    }

    [Fact]
    public async Task Invalid_policy_is_refused_whole_with_every_error_and_changes_nothing()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var file = Path.Combine(_mesh.Root, "bad.yaml");
        await File.WriteAllTextAsync(file, OrdersFromFrontend + "\n---\n" + """
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata:
              name: broken
              namespace: shop
            spec:
              action: ALLOW
              rules:
                - from:
                    - source:
                        principals: ["spiffe://Cluster.local/ns/shop/sa/x"]
                  when:
                    - key: source.ip
                      values: ["10.0.0.0/33"]
            """);
        var (exit, _, stderr) = await _mesh.ZtmctlAsync("apply", "-f", file);
        Assert.Equal(1, exit);
        Assert.Contains("nothing applied", stderr, StringComparison.Ordinal);
        Assert.Contains("principals[0]", stderr, StringComparison.Ordinal);
        Assert.Contains("10.0.0.0/33", stderr, StringComparison.Ordinal);

        // Nothing was stored, not even the valid document of the same apply.
        var (_, list, _) = await _mesh.ZtmctlAsync("get", "-o", "json");
        var listed = JsonDocument.Parse(list).RootElement;
        Assert.Equal("v0", listed.GetProperty("version").GetString());
        Assert.Equal(0, listed.GetProperty("resources").GetArrayLength());
    }

    [Fact]
    public async Task Deny_wins_policy_test_agrees_with_the_sidecar_and_enforcement_survives_the_control_plane()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane, allowNamespace: false);
        var version = await controlPlane.ApplyPolicyAsync(OrdersFromFrontend + "\n---\n" + NoSecrets);
        await ordersSidecar.WaitForPolicyAsync(version);
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}";

        // Path tricks do not get past the DENY: what is decided is the normalized path (Kestrel and the forwarding leg
        // normalize; the inbound sidecar merges empty segments as a last guard). Sent as raw bytes, because HttpClient
        // would normalize dot segments and escapes itself before anything reached the mesh.
        foreach (var trick in new[] { "/orders//secret", "/orders/x/../secret", "/orders/%73ecret" })
        {
            Assert.StartsWith("HTTP/1.1 403", await RawGetAsync(frontend, $"orders:{orders.HttpPort}", trick), StringComparison.Ordinal);
        }

        foreach (var (method, path) in new[] { ("GET", "/orders/1"), ("GET", "/orders/secret"), ("DELETE", "/orders/1") })
        {
            using var response = await http.SendAsync(new HttpRequestMessage(new HttpMethod(method), url + path));
            var (exit, verdict, _) = await _mesh.ZtmctlAsync("policy", "test", "--from", DataPlaneFixture.FrontendId, "--to", "orders.shop",
                "--method", method, "--path", path, "--port", orders.HttpPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var allowedBySidecar = response.StatusCode == HttpStatusCode.OK;
            Assert.Equal(allowedBySidecar ? 0 : 4, exit);
            Assert.StartsWith(allowedBySidecar ? "ALLOW" : "DENY", verdict, StringComparison.Ordinal);
            if (path == "/orders/secret")
            {
                Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode); // DENY wins over the matching ALLOW
                Assert.Contains("shop/no-secrets", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
                Assert.Contains("shop/no-secrets", verdict, StringComparison.Ordinal);
            }
        }

        // Control plane gone: the last good policy is still enforced.
        await controlPlane.Process.StopAsync();
        await ordersSidecar.Process.WaitForLineAsync("config stream to the control plane broke");
        using (var allowed = await http.GetAsync($"{url}/orders/2"))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }
        using (var denied = await http.GetAsync($"{url}/orders/secret"))
        {
            Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        }

        // Control plane cut off rather than down: its port accepts connections and never answers, as behind a network
        // partition. Once the frontend's registry answer for orders is stale, requests keep going to the endpoints last
        // known, none of them waiting for the registry call's 3-s deadline, and the sidecar says what it did.
        using var partitioned = new System.Net.Sockets.TcpListener(IPAddress.Loopback, controlPlane.Address.Port);
        partitioned.Start();
        var held = new System.Collections.Concurrent.ConcurrentBag<System.Net.Sockets.Socket>();
        var accepting = Task.Run(async () =>
        {
            while (true)
            {
                held.Add(await partitioned.AcceptSocketAsync());
            }
        });
        var fellBack = frontend.Process.WaitForLineAsync("using the last known endpoints of orders", TimeSpan.FromSeconds(30));
        var served = 0;
        while (!fellBack.IsCompleted || served == 0)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            using (var response = await http.GetAsync($"{url}/orders/2"))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }
            var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(started);
            Assert.True(elapsed < TimeSpan.FromSeconds(1), $"a request waited {elapsed.TotalMilliseconds:0} ms on the unreachable control plane");
            served++;
            await Task.WhenAny(fellBack, Task.Delay(50));
        }
        await fellBack; // throws if the line never came
        // A service it never resolved has nowhere to go: a 503 that says why (at most after the registry call's deadline).
        using (var unknown = await http.GetAsync("http://payments/"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, unknown.StatusCode);
            var reason = await unknown.Content.ReadAsStringAsync();
            Assert.Contains("registry did not answer (", reason, StringComparison.Ordinal); // DeadlineExceeded, or Unavailable while gRPC backs off
            Assert.Contains("'payments' was never resolved", reason, StringComparison.Ordinal);
        }
        partitioned.Stop();
        foreach (var socket in held.ToArray())
        {
            socket.Dispose();
        }
        await Assert.ThrowsAnyAsync<Exception>(() => accepting);
    }
}
