using System.Net;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// The decision log through real processes: the orders sidecar runs with <c>--decision-log</c>; the frontend calls it
/// (allowed, and denied by a DENY rule); the sidecar stops as an orchestrator stops it (its last checkpoint goes to the
/// control plane on the way out); <c>ztmctl audit verify</c> proves the log, then names the record an attacker edited.
/// </summary>
public sealed class DecisionLogEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task Ztmctl_proves_the_log_of_real_requests_and_names_an_edited_record()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        await controlPlane.AllowNamespaceAsync("orders");
        var policy = await controlPlane.ApplyPolicyAsync("""
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata:
              name: no-admin
              namespace: shop
            spec:
              selector:
                service: orders
              action: DENY
              rules:
                - to:
                    - operation:
                        paths: ["/admin/*"]
            """);
        var logDir = Path.Combine(_mesh.Root, "decisions");
        var orders = await DemoApp.StartAsync(_mesh, "orders");
        var ordersSidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "orders"), "sidecar-orders",
            [.. orders.SidecarArguments, "--decision-log", logDir]);
        var frontend = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "frontend"), "sidecar-frontend");
        foreach (var sidecar in new[] { ordersSidecar, frontend })
        {
            await sidecar.WaitForIdentityAsync();
            await sidecar.Process.WaitForLineAsync("registered with the control plane ");
        }
        await ordersSidecar.WaitForPolicyAsync(policy);

        using (var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout })
        {
            for (var i = 1; i <= 5; i++)
            {
                using var allowed = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/{i}");
                Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
            }
            using var denied = await http.GetAsync($"http://orders:{orders.HttpPort}/admin/users");
            Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        }
        await ordersSidecar.Process.StopAsync();

        var segment = Assert.Single(Directory.GetFiles(logDir, "decisions-*.jsonl"));
        var lines = File.ReadAllLines(segment);
        Assert.Equal(7, lines.Length); // the open record, five allowed, one denied
        Assert.Contains("\"decision\":\"denied\",\"policy\":\"shop/no-admin\",\"rule\":0", lines[6], StringComparison.Ordinal);
        Assert.Contains($"\"caller\":\"{DataPlaneFixture.FrontendId}\"", lines[1], StringComparison.Ordinal);

        var (exit, stdout, _) = await _mesh.ZtmctlAsync("audit", "verify", "--log", logDir);
        Assert.Equal(0, exit);
        Assert.Contains($"proven: records 1..7 of {DataPlaneFixture.OrdersId}", stdout, StringComparison.Ordinal);

        var (listExit, checkpoints, _) = await _mesh.ZtmctlAsync("audit", "checkpoints", "--workload", DataPlaneFixture.OrdersId);
        Assert.Equal(0, listExit);
        var checkpointsFile = Path.Combine(_mesh.Root, "checkpoints.jsonl");
        await File.WriteAllTextAsync(checkpointsFile, checkpoints);

        // An attacker with the disk turns a denial into an allowed request.
        lines[6] = lines[6].Replace("\"status\":403,\"decision\":\"denied\"", "\"status\":200,\"decision\":\"allowed\"", StringComparison.Ordinal);
        await File.WriteAllLinesAsync(segment, lines);
        (exit, stdout, _) = await _mesh.ZtmctlAsync("audit", "verify", "--log", logDir);
        Assert.Equal(1, exit);
        Assert.Contains("record 7 (", stdout, StringComparison.Ordinal);
        Assert.Contains("NOT proven", stdout, StringComparison.Ordinal);

        // Offline, from the checkpoints saved earlier, and the usage errors.
        (exit, stdout, _) = await _mesh.ZtmctlAsync("audit", "verify", "--log", segment, "--checkpoints", checkpointsFile, "--trust-bundle", controlPlane.BundlePath);
        Assert.Equal(1, exit);
        Assert.Contains("record 7 (", stdout, StringComparison.Ordinal);
        var (missing, _, error) = await _mesh.ZtmctlAsync("audit", "verify", "--log", Path.Combine(_mesh.Root, "nowhere"));
        Assert.Equal(2, missing);
        Assert.Contains("no such directory or file", error, StringComparison.Ordinal);
    }
}
