using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Authorization of a declared TCP port (<c>--tcp-port</c>) through real processes, read as Istio reads policy on TCP
/// traffic: a DENY rule's HTTP-only fields are left out (so it denies the connections the rest of it matches), an
/// ALLOW rule with them allows no connection. <c>ztmctl apply</c> warns about such a DENY, and <c>ztmctl policy test
/// --tcp</c> says what the sidecar does.
/// </summary>
public sealed class TcpPortPolicyEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Cart = "spiffe://cluster.local/ns/shop/sa/cart";

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    private static string Policy(string name, string spec) => $"""
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {"{"}name: {name}, namespace: shop{"}"}
        spec:
          selector: {"{"}service: orders{"}"}
        {spec}
        ---

        """;

    private static readonly string AllowShop = Policy("allow-shop", """
          action: ALLOW
          rules:
            - from: [{source: {namespaces: [shop]}}]
        """);

    private static string DenyAdminTo(string principal) => Policy("no-admin", $$$"""
          action: DENY
          rules:
            - from: [{source: {principals: ["{{{principal}}}"]}}]
              to: [{operation: {paths: ["/admin/*"]}}]
        """);

    [Fact]
    public async Task A_deny_with_paths_denies_the_tcp_connections_of_its_principals_and_an_allow_with_paths_allows_none()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane, allowNamespace: false);
        var tcpPort = orders.TcpPort.ToString(CultureInfo.InvariantCulture);
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}";

        // /config_dump says how each app port is treated, and why.
        var policy = (await ordersSidecar.ConfigDumpAsync()).GetProperty("policy");
        Assert.False(policy.GetProperty("l4Mode").GetBoolean());
        var ports = policy.GetProperty("ports").EnumerateArray().ToDictionary(p => p.GetProperty("port").GetInt32(), p => (p.GetProperty("mode").GetString(), p.GetProperty("reason").GetString()));
        Assert.Equal(("l7", "L4 mode is off"), ports[orders.HttpPort]);
        Assert.Equal(("tcp", "declared TCP port (--tcp-port)"), ports[orders.TcpPort]);

        // 1. A DENY on paths for the frontend: applied, with Istio's warning, and the frontend's TCP connection is
        //    refused at connect while its HTTP requests outside /admin still pass.
        var (exit, applied, warnings) = await ApplyAsync("deny-frontend.yaml", AllowShop + DenyAdminTo(DataPlaneFixture.FrontendId));
        Assert.Equal(0, exit);
        Assert.Contains("Warning: AuthorizationPolicy shop/no-admin rule 0: paths cannot be checked on a TCP connection", warnings, StringComparison.Ordinal);
        Assert.DoesNotContain("allow-shop", warnings, StringComparison.Ordinal);
        await ordersSidecar.WaitForPolicyAsync(Version(applied));

        Assert.Equal("", await EchoOverTcpAsync(frontend, orders.TcpPort, "ping"));
        await ordersSidecar.Process.WaitForLineAsync(l => l.Contains("\"mode\":\"tcp\"", StringComparison.Ordinal) && l.Contains("\"outcome\":\"denied\"", StringComparison.Ordinal)
            // JSON escapes the quotes: 'shop/no-admin'
            && l.Contains("denied by DENY policy \\u0027shop/no-admin\\u0027 rule 0 (paths ignored for a TCP connection)", StringComparison.Ordinal), "TCP denial by the DENY with paths");
        using (var response = await http.GetAsync($"{url}/orders/1"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        using (var response = await http.GetAsync($"{url}/admin/users"))
        {
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        }
        var (testExit, verdict, _) = await _mesh.ZtmctlAsync("policy", "test", "--from", DataPlaneFixture.FrontendId, "--to", "orders.shop", "--port", tcpPort, "--tcp");
        Assert.Equal(4, testExit);
        Assert.StartsWith("DENY: denied by DENY policy 'shop/no-admin' rule 0 (paths ignored for a TCP connection)", verdict, StringComparison.Ordinal);
        Assert.Contains("rule 0: paths ignored for a TCP connection: this DENY rule applies to every TCP or L4 connection", verdict, StringComparison.Ordinal);

        // 2. The same DENY for another principal: the frontend's connection is relayed.
        (exit, applied, _) = await ApplyAsync("deny-cart.yaml", AllowShop + DenyAdminTo(Cart));
        Assert.Equal(0, exit);
        await ordersSidecar.WaitForPolicyAsync(Version(applied));
        Assert.Equal("ping", await EchoOverTcpAsync(frontend, orders.TcpPort, "ping"));
        (testExit, verdict, _) = await _mesh.ZtmctlAsync("policy", "test", "--from", DataPlaneFixture.FrontendId, "--to", "orders.shop", "--port", tcpPort, "--tcp");
        Assert.Equal(0, testExit);
        Assert.StartsWith("ALLOW: allowed by ALLOW policy 'shop/allow-shop' rule 0", verdict, StringComparison.Ordinal);

        // 3. An ALLOW whose rule has paths (even "*") allows no connection: the TCP caller is refused, HTTP is allowed.
        (exit, applied, warnings) = await ApplyAsync("allow-paths.yaml", Policy("allow-shop", """
              action: ALLOW
              rules:
                - from: [{source: {namespaces: [shop]}}]
                  to: [{operation: {paths: ["*"]}}]
            """));
        Assert.Equal(0, exit);
        Assert.DoesNotContain("Warning", warnings, StringComparison.Ordinal); // Istio warns about DENY only: an ALLOW that allows less is safe
        await ordersSidecar.WaitForPolicyAsync(Version(applied));
        Assert.Equal("", await EchoOverTcpAsync(frontend, orders.TcpPort, "ping"));
        await ordersSidecar.Process.WaitForLineAsync(l => l.Contains("\"mode\":\"tcp\"", StringComparison.Ordinal) && l.Contains("\"outcome\":\"denied\"", StringComparison.Ordinal)
            && l.Contains("no ALLOW policy matched", StringComparison.Ordinal), "TCP denial: the ALLOW with paths matches no connection");
        using (var response = await http.GetAsync($"{url}/orders/1"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // ztmctl policy test --tcp refuses what a connection cannot carry, with one line and the usage exit code.
        var (badExit, _, error) = await _mesh.ZtmctlAsync("policy", "test", "--from", DataPlaneFixture.FrontendId, "--to", "orders.shop", "--port", tcpPort, "--tcp", "--path", "/x");
        Assert.NotEqual(0, badExit);
        Assert.Contains("a TCP connection has no method, path, headers or JWT", error, StringComparison.Ordinal);
        (badExit, _, error) = await _mesh.ZtmctlAsync("policy", "test", "--from", DataPlaneFixture.FrontendId, "--to", "orders.shop", "--tcp");
        Assert.NotEqual(0, badExit);
        Assert.Contains("--tcp needs --port", error, StringComparison.Ordinal);
    }

    private async Task<(int Exit, string Stdout, string Stderr)> ApplyAsync(string name, string yaml)
    {
        var file = Path.Combine(_mesh.Root, name);
        await File.WriteAllTextAsync(file, yaml);
        return await _mesh.ZtmctlAsync("apply", "-f", file);
    }

    private static string Version(string applied) =>
        applied.Split('\n').Single(l => l.StartsWith("policy version ", StringComparison.Ordinal))["policy version ".Length..].Trim();

    /// <summary>Sends <paramref name="text"/> to the TCP echo through the sidecar (CONNECT), half-closes, and returns what came back ("" when the connection was refused).</summary>
    private static async Task<string> EchoOverTcpAsync(Sidecar sidecar, int port, string text)
    {
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(sidecar.Outbound, timeout.Token);
        var head = await DataPlaneTests.ConnectAsync(socket, $"orders.shop:{port}", timeout.Token);
        Assert.StartsWith("HTTP/1.1 200 ", head, StringComparison.Ordinal); // the mTLS leg is up; the destination decides after it
        var receiving = EchoClient.ReceiveToEnd(socket, timeout.Token);
        try
        {
            await socket.SendAsync(Encoding.ASCII.GetBytes(text), SocketFlags.None, timeout.Token);
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
            // The destination may have closed already: what came back says so.
        }
        try
        {
            return Encoding.ASCII.GetString(await receiving);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return ""; // a reset is a close with nothing more, as EchoClient.SendRawAsync counts it
        }
    }
}
