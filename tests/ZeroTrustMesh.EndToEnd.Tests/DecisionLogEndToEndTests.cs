using System.Net;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using OpenTelemetry.Proto.Collector.Logs.V1;
using OpenTelemetry.Proto.Logs.V1;
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

    [Fact]
    public async Task Every_record_is_exported_to_an_OTLP_collector_with_the_sequence_and_hash_of_the_chain()
    {
        var received = Channel.CreateUnbounded<LogRecord>();
        await using var collector = await StartCollectorAsync(received.Writer);
        var controlPlane = await _mesh.StartControlPlaneAsync();
        await controlPlane.AllowNamespaceAsync("orders");
        var logDir = Path.Combine(_mesh.Root, "decisions");
        var orders = await DemoApp.StartAsync(_mesh, "orders");
        var ordersSidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "orders"), "sidecar-orders",
            [.. orders.SidecarArguments, "--decision-log", logDir, "--decision-log-otlp", collector.Urls.Single()]);
        var frontend = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "frontend"), "sidecar-frontend");
        foreach (var sidecar in new[] { ordersSidecar, frontend })
        {
            await sidecar.WaitForIdentityAsync();
            await sidecar.Process.WaitForLineAsync("registered with the control plane ");
        }

        using (var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout })
        {
            for (var i = 1; i <= 5; i++)
            {
                using var allowed = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/{i}");
                Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
            }
        }
        var exported = new List<LogRecord>();
        while (exported.Count < 5)
        {
            exported.Add(await received.Reader.ReadAsync().AsTask().WaitAsync(Mesh.Timeout));
        }
        await ordersSidecar.Process.StopAsync();

        // Each exported record is the chain's record of that sequence number, with its hash.
        var chained = File.ReadAllLines(Assert.Single(Directory.GetFiles(logDir, "decisions-*.jsonl"))).Skip(1)
            .Select(line => JsonDocument.Parse(line).RootElement)
            .Select(r => $"{r.GetProperty("seq").GetInt64()} {r.GetProperty("hash").GetString()} {r.GetProperty("method").GetString()} {r.GetProperty("path").GetString()} {r.GetProperty("caller").GetString()}");
        Assert.Equal(chained, exported.Select(r => $"{Int(r, "ztm.decision_log.sequence")} {Text(r, "ztm.decision_log.hash")} {Text(r, "http.request.method")} {Text(r, "url.path")} {Text(r, "ztm.caller")}"));
        Assert.All(exported, r => Assert.Equal(("ztm.decision", "allow", 200L), (r.EventName, Text(r, "ztm.decision"), Int(r, "http.response.status_code"))));
    }

    [Fact]
    public async Task A_collector_that_is_down_costs_requests_nothing_and_the_export_says_so()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        await controlPlane.AllowNamespaceAsync("orders");
        int closed;
        using (var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            closed = ((IPEndPoint)listener.LocalEndpoint).Port; // closed again: connections to it are refused
        }
        var orders = await DemoApp.StartAsync(_mesh, "orders");
        var ordersSidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "orders"), "sidecar-orders",
            [.. orders.SidecarArguments, "--decision-log", Path.Combine(_mesh.Root, "decisions"), "--decision-log-otlp", $"http://127.0.0.1:{closed}"]);
        var frontend = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "frontend"), "sidecar-frontend");
        foreach (var sidecar in new[] { ordersSidecar, frontend })
        {
            await sidecar.WaitForIdentityAsync();
            await sidecar.Process.WaitForLineAsync("registered with the control plane ");
        }

        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        for (var i = 1; i <= 20; i++)
        {
            using var allowed = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/{i}");
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }
        await ordersSidecar.Process.WaitForLineAsync($"decision log export to http://127.0.0.1:{closed}/v1/logs failing (");
        // Five tries with backoff (about 8-15 s), then the batch is dropped and counted.
        await ordersSidecar.Process.WaitForLineAsync("record(s) dropped after 5 attempt(s)", TimeSpan.FromSeconds(60));
        var metrics = await Mesh.MetricsAsync(ordersSidecar);
        Assert.InRange(Mesh.Sample(metrics, "ztm_decision_log_export_dropped_total", ("reason", "collector_unreachable")), 1, 20);
        Assert.Contains("ztm_decision_log_exported_total 0", metrics, StringComparison.Ordinal);
    }

    private static string Text(LogRecord record, string key) => record.Attributes.Single(a => a.Key == key).Value.StringValue;

    private static long Int(LogRecord record, string key) => record.Attributes.Single(a => a.Key == key).Value.IntValue;

    /// <summary>An OTLP/HTTP logs receiver on 127.0.0.1:0 that decodes what arrives.</summary>
    private static async Task<WebApplication> StartCollectorAsync(ChannelWriter<LogRecord> received)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.MapPost("/v1/logs", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            var request = ExportLogsServiceRequest.Parser.ParseFrom(body.ToArray());
            foreach (var record in request.ResourceLogs.SelectMany(r => r.ScopeLogs).SelectMany(s => s.LogRecords))
            {
                received.TryWrite(record);
            }
            return Results.Ok();
        });
        await app.StartAsync();
        return app;
    }
}
