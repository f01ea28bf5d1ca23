using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Transparent capture on two hosts (network namespaces): the frontend's app dials the orders service's address
/// as if there were no mesh; iptables REDIRECT hands the connection to the frontend's sidecar, which reads the
/// original destination, finds the service in the registry and carries the bytes over mTLS to the orders sidecar.
/// </summary>
public sealed class TransparentCaptureTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int AppHttpPort = 18080;
    private const int AppTcpPort = 19000;
    private const int OutboundPort = 15001;

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

    [RootFact("ip", "iptables", "curl", "bash", "timeout")]
    public async Task Redirected_http_and_tcp_reach_the_service_over_mtls_with_the_callers_identity()
    {
        _hosts = await TwoHosts.CreateAsync();
        var hosts = _hosts;
        var config = Path.Combine(_mesh.Root, "ztm-config");

        // Host B: the control plane, the orders app on its loopback, and its sidecar.
        var controlPlane = _mesh.Track(MeshProcess.Start("controlplane", Executables.ControlPlane,
            ["--data-dir", Path.Combine(_mesh.Root, "cp"), "--listen", hosts.AddressB, "--port", "0", "--metrics-port", "0", "--operator-config", config], output, _mesh.Environment, hosts.B));
        var listening = await controlPlane.WaitForLineAsync("ztm-controlplane: listening on ");
        var address = listening[listening.IndexOf("https://", StringComparison.Ordinal)..].Trim();
        var bundle = Path.Combine(_mesh.Root, "cp", "bundle.pem");

        var app = _mesh.Track(MeshProcess.Start("orders-app", Executables.DemoApp,
            ["--name", "orders", "--http-port", $"{AppHttpPort}", "--grpc-port", "0", "--tcp-port", $"{AppTcpPort}"], output, _mesh.Environment, hosts.B));
        await app.WaitForLineAsync("tcp listening on");

        var policyFile = Path.Combine(_mesh.Root, "allow-shop.yaml");
        await File.WriteAllTextAsync(policyFile, ControlPlane.AllowNamespaceYaml("orders"));
        await TwoHosts.ExecAsync(hosts.B, "dotnet", Executables.Ztmctl, "--config", config, "apply", "-f", policyFile);

        var ordersToken = await MintAsync(hosts.B, config, "orders");
        var orders = _mesh.Track(MeshProcess.Start("orders-sidecar", Executables.Sidecar,
            ["--control-plane", address, "--trust-bundle", bundle, "--join-token", ordersToken, "--admin-port", "0", "--outbound-port", "0",
             "--inbound-address", hosts.AddressB, "--inbound-port", "15006", "--app-port", $"{AppHttpPort}", "--tcp-port", $"{AppTcpPort}",
             "--service-address", hosts.VirtualAddress], output, _mesh.Environment, hosts.B));
        await orders.WaitForLineAsync("registered with the control plane");
        await orders.WaitForLineAsync("config v1 applied");

        // Host A: the frontend's sidecar, and iptables sending the app's traffic for the service address to it.
        var frontendToken = await MintAsync(hosts.B, config, "frontend");
        var frontend = _mesh.Track(MeshProcess.Start("frontend-sidecar", Executables.Sidecar,
            ["--control-plane", address, "--trust-bundle", bundle, "--join-token", frontendToken, "--admin-port", "0",
             "--inbound-address", hosts.AddressA, "--inbound-port", "15006", "--outbound-port", $"{OutboundPort}"], output, _mesh.Environment, hosts.A));
        await frontend.WaitForLineAsync("registered with the control plane");
        await TwoHosts.ExecAsync(hosts.A, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", hosts.VirtualAddress,
            "-j", "REDIRECT", "--to-ports", $"{OutboundPort}");

        // The app on host A knows nothing of the mesh: plain HTTP to the service address.
        var body = await TwoHosts.ExecAsync(hosts.A, "curl", "-sS", "--max-time", "20", $"http://{hosts.VirtualAddress}:{AppHttpPort}/orders/42",
            "-H", "x-ztm-client-identity: spiffe://cluster.local/ns/shop/sa/admin");
        var echo = JsonDocument.Parse(body).RootElement;
        Assert.Equal("orders", echo.GetProperty("app").GetString());
        Assert.Equal("/orders/42", echo.GetProperty("path").GetString());
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/frontend", echo.GetProperty("caller").GetString());

        // The inbound sidecar logged it as an mTLS call from the frontend.
        await orders.WaitForLineAsync(l => l.Contains("\"direction\":\"inbound\"", StringComparison.Ordinal)
            && l.Contains("\"source\":\"spiffe://cluster.local/ns/shop/sa/frontend\"", StringComparison.Ordinal), "inbound access log");

        // Opaque TCP to the declared TCP port is relayed, not parsed.
        var tcp = await TwoHosts.ExecAsync(hosts.A, "timeout", "20", "bash", "-c",
            $"exec 3<>/dev/tcp/{hosts.VirtualAddress}/{AppTcpPort}; printf 'ping over tcp\\n' >&3; read -r line <&3; printf '%s' \"$line\"");
        Assert.Equal("ping over tcp", tcp);
    }

    private static async Task<string> MintAsync(string ns, string config, string serviceAccount) =>
        (await TwoHosts.ExecAsync(ns, "dotnet", Executables.Ztmctl, "--config", config, "token", "create", "-n", "shop", "-s", serviceAccount, "-o", "token")).Trim();
}
