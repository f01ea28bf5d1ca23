using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// L4 mode (<c>ztm-controlplane --l4-mode on</c>) with transparent capture on two hosts (network namespaces): an HTTP
/// port whose policies need only L4 attributes is relayed as bytes after the mTLS check and authorized once per
/// connection; an L7 policy switches it back to per-request HTTP, closing the L4 connections still open.
/// </summary>
public sealed class L4ModeEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int AppHttpPort = 18080;
    private const int DeniedHttpPort = 18081; // declared, nothing listens: a denial must come before the app is dialled
    private const int OutboundPort = 15001;
    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";

    private readonly TestMesh _mesh = new(output);
    private TwoHosts? _hosts;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _mesh.DisposeAsync();
        if (_hosts is not null)
        {
            await _hosts.DisposeAsync();
        }
    }

    private static string Policy(string name, string spec) => $"""
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {"{"}name: {name}, namespace: shop{"}"}
        spec:
          selector: {"{"}service: orders{"}"}
        {spec}
        ---

        """;

    [RootFact("ip", "iptables", "curl", "bash", "timeout")]
    public async Task An_L4_port_is_relayed_as_bytes_denied_at_connect_and_an_L7_policy_switches_it_back()
    {
        _hosts = await TwoHosts.CreateAsync();
        var hosts = _hosts;
        var config = Path.Combine(_mesh.Root, "ztm-config");

        var controlPlane = _mesh.Track(MeshProcess.Start("controlplane", Executables.ControlPlane,
            ["--data-dir", Path.Combine(_mesh.Root, "cp"), "--listen", hosts.AddressB, "--port", "0", "--metrics-port", "0", "--operator-config", config, "--l4-mode", "on"],
            output, _mesh.Environment, hosts.B));
        var listening = await controlPlane.WaitForLineAsync("ztm-controlplane: listening on ");
        var address = listening[listening.IndexOf("https://", StringComparison.Ordinal)..].Trim();
        var bundle = Path.Combine(_mesh.Root, "cp", "bundle.pem");

        var app = _mesh.Track(MeshProcess.Start("orders-app", Executables.DemoApp,
            ["--name", "orders", "--http-port", $"{AppHttpPort}", "--grpc-port", "0", "--tcp-port", "-1"], output, _mesh.Environment, hosts.B));
        await app.WaitForLineAsync("http listening on");

        // Only L4 attributes: the frontend may call orders, but not on port 18081.
        var l4Policy = Policy("orders-l4", """
              action: ALLOW
              rules:
                - from: [{source: {principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]}}]
            """) + Policy("orders-no-18081", $$$"""
              action: DENY
              rules:
                - to: [{operation: {ports: [{{{DeniedHttpPort}}}]}}]
            """);
        await ApplyAsync(hosts, config, "l4.yaml", l4Policy);

        var orders = _mesh.Track(MeshProcess.Start("orders-sidecar", Executables.Sidecar,
            ["--control-plane", address, "--trust-bundle", bundle, "--join-token", await MintAsync(hosts.B, config, "orders"), "--admin-port", "0", "--outbound-port", "0",
             "--inbound-address", hosts.AddressB, "--inbound-port", "15006", "--app-port", $"{AppHttpPort}", "--app-port", $"{DeniedHttpPort}",
             "--service-address", hosts.VirtualAddress], output, _mesh.Environment, hosts.B));
        await orders.WaitForLineAsync("registered with the control plane");
        await orders.WaitForLineAsync(l => l.Contains("config v1 applied", StringComparison.Ordinal) && l.Contains("L4 mode: every port L4", StringComparison.Ordinal), "config v1 in L4 mode");
        var ports = await PortsAsync(orders, hosts.B);
        Assert.Equal("l4", ports[AppHttpPort].Mode);
        Assert.Equal("l4", ports[DeniedHttpPort].Mode);

        var frontend = _mesh.Track(MeshProcess.Start("frontend-sidecar", Executables.Sidecar,
            ["--control-plane", address, "--trust-bundle", bundle, "--join-token", await MintAsync(hosts.B, config, "frontend"), "--admin-port", "0",
             "--inbound-address", hosts.AddressA, "--inbound-port", "15006", "--outbound-port", $"{OutboundPort}"], output, _mesh.Environment, hosts.A));
        await frontend.WaitForLineAsync("registered with the control plane");
        await TwoHosts.ExecAsync(hosts.A, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", hosts.VirtualAddress,
            "-j", "REDIRECT", "--to-ports", $"{OutboundPort}");

        // 1. Relayed as bytes: the app sees the path exactly as sent (the HTTP path would merge the slashes) and no
        //    identity header (the HTTP path always sets it); the connection is one access-log line on each side.
        var echo = await CurlAsync(hosts, $"//orders//42");
        Assert.Equal("//orders//42", echo.GetProperty("path").GetString());
        Assert.False(echo.TryGetProperty("caller", out var caller) && caller.ValueKind == JsonValueKind.String, $"the app got an identity header: {caller}");
        await orders.WaitForLineAsync(l => l.Contains("\"mode\":\"l4\"", StringComparison.Ordinal) && l.Contains("\"direction\":\"inbound\"", StringComparison.Ordinal)
            && l.Contains($"\"source\":\"{Frontend}\"", StringComparison.Ordinal) && l.Contains($"\"port\":{AppHttpPort}", StringComparison.Ordinal)
            && l.Contains("\"outcome\":\"closed\"", StringComparison.Ordinal), "inbound L4 access log");
        await frontend.WaitForLineAsync(l => l.Contains("\"mode\":\"l4\"", StringComparison.Ordinal) && l.Contains("\"direction\":\"outbound\"", StringComparison.Ordinal), "outbound L4 access log");
        Assert.DoesNotContain(orders.Lines, l => l.Contains("\"method\":\"GET\"", StringComparison.Ordinal)); // no per-request line: nothing was parsed

        // 2. A denied connection is refused at connect: closed before any byte reaches (or comes from) the app.
        var denied = await TwoHosts.ExecAsync(hosts.A, "timeout", "20", "bash", "-c",
            $"exec 3<>/dev/tcp/{hosts.VirtualAddress}/{DeniedHttpPort}; printf 'GET / HTTP/1.1\\r\\nHost: orders\\r\\n\\r\\n' >&3; cat <&3; printf 'EOF'");
        Assert.Equal("EOF", denied);
        await orders.WaitForLineAsync(l => l.Contains("\"outcome\":\"denied\"", StringComparison.Ordinal) && l.Contains($"\"port\":{DeniedHttpPort}", StringComparison.Ordinal)
            // JSON escapes the quotes: 'shop/orders-no-18081'
            && l.Contains("denied by DENY policy \\u0027shop/orders-no-18081\\u0027 rule 0", StringComparison.Ordinal), "inbound L4 denial");

        // 3. A keep-alive L4 connection stays open until an L7 policy arrives.
        await using var open = MeshProcess.StartProgram("open-l4-connection", "ip", ["netns", "exec", hosts.A, "timeout", "60", "bash", "-c",
            $"exec 3<>/dev/tcp/{hosts.VirtualAddress}/{AppHttpPort}; printf 'GET //kept//open HTTP/1.1\\r\\nHost: orders\\r\\n\\r\\n' >&3; cat <&3; echo; echo CLOSED"], output);
        await open.WaitForLineAsync("HTTP/1.1 200"); // the body has no newline: its line comes only with the close

        // 4. An HTTP-level rule: port 18080 is L7 again, for new connections and for the open one, which is closed.
        var l7Policy = Policy("orders-l4", """
              action: ALLOW
              rules:
                - from: [{source: {principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]}}]
                  to: [{operation: {paths: ["/orders/*"]}}]
            """) + Policy("orders-no-18081", $$$"""
              action: DENY
              rules:
                - to: [{operation: {ports: [{{{DeniedHttpPort}}}]}}]
            """);
        await ApplyAsync(hosts, config, "l7.yaml", l7Policy);
        await orders.WaitForLineAsync(l => l.Contains("config v2 applied", StringComparison.Ordinal)
            && l.Contains("AuthorizationPolicy 'shop/orders-l4' rule 0: 'paths' needs the HTTP request", StringComparison.Ordinal), "config v2 with every port L7");
        await open.WaitForLineAsync("CLOSED");
        ports = await PortsAsync(orders, hosts.B);
        Assert.Equal(("l7", "AuthorizationPolicy 'shop/orders-l4' rule 0: 'paths' needs the HTTP request"), ports[AppHttpPort]);
        await orders.WaitForLineAsync(l => l.Contains("\"outcome\":\"closed_by_policy\"", StringComparison.Ordinal)
            && l.Contains($"port {AppHttpPort} is L7 from config v2", StringComparison.Ordinal), "open L4 connection closed by the L7 policy");

        // Whether the frontend's sidecar still relays (its registry answer is up to 5 s old) or proxies HTTP, every
        // request now meets the HTTP rule: normalized path, the caller's identity asserted, /admin denied by path.
        echo = await CurlAsync(hosts, "/orders//42");
        Assert.Equal("/orders/42", echo.GetProperty("path").GetString());
        Assert.Equal(Frontend, echo.GetProperty("caller").GetString());
        var admin = await TwoHosts.ExecAsync(hosts.A, "curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}", $"http://{hosts.VirtualAddress}:{AppHttpPort}/admin");
        Assert.EndsWith("\n403", admin, StringComparison.Ordinal);
        Assert.Contains("RBAC: access denied", admin, StringComparison.Ordinal);
    }

    /// <summary>The port modes of <c>/config_dump</c> (the admin port is on loopback inside the host's namespace).</summary>
    private static async Task<Dictionary<int, (string? Mode, string? Reason)>> PortsAsync(MeshProcess sidecar, string host)
    {
        var listening = await sidecar.WaitForLineAsync("admin listening on ");
        var admin = listening[listening.IndexOf("http://", StringComparison.Ordinal)..].Split(' ')[0];
        var dump = JsonDocument.Parse(await TwoHosts.ExecAsync(host, "curl", "-sS", "--max-time", "20", $"{admin}/config_dump")).RootElement;
        Assert.True(dump.GetProperty("policy").GetProperty("l4Mode").GetBoolean());
        return dump.GetProperty("policy").GetProperty("ports").EnumerateArray()
            .ToDictionary(p => p.GetProperty("port").GetInt32(), p => (p.GetProperty("mode").GetString(), p.GetProperty("reason").GetString()));
    }

    private async Task<JsonElement> CurlAsync(TwoHosts hosts, string path)
    {
        // --path-as-is: curl would otherwise squash the slashes itself.
        var body = await TwoHosts.ExecAsync(hosts.A, "curl", "-sS", "--max-time", "20", "--path-as-is", $"http://{hosts.VirtualAddress}:{AppHttpPort}{path}");
        output.WriteLine($"GET {path}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    private async Task ApplyAsync(TwoHosts hosts, string config, string name, string yaml)
    {
        var file = Path.Combine(_mesh.Root, name);
        await File.WriteAllTextAsync(file, yaml);
        await TwoHosts.ExecAsync(hosts.B, "dotnet", Executables.Ztmctl, "--config", config, "apply", "-f", file);
    }

    private static async Task<string> MintAsync(string ns, string config, string serviceAccount) =>
        (await TwoHosts.ExecAsync(ns, "dotnet", Executables.Ztmctl, "--config", config, "token", "create", "-n", "shop", "-s", serviceAccount, "-o", "token")).Trim();
}
