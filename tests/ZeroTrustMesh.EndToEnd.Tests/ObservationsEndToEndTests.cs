using System.Globalization;
using System.Net;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Issue 19, sections 1 and 2 through real processes: the orders sidecar reports every request it serves (allowed and
/// refused) to the control plane on the observation stream; <c>ztmctl api inventory</c> and <c>api diff</c> show what
/// was observed against the declared ApiSpec, and a restart keeps it; a tiny buffer drops and counts.
/// </summary>
public sealed class ObservationsEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task Requests_through_the_mesh_reach_the_control_plane_as_observations()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        await ordersSidecar.Process.WaitForLineAsync("observation stream to the control plane open");
        await controlPlane.Process.WaitForLineAsync("observation stream from spiffe://cluster.local/ns/shop/sa/orders open");
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        for (var i = 0; i < 12; i++)
        {
            using var response = await http.GetAsync(new Uri($"http://orders:{orders.HttpPort}/orders/{i + 100}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Accepted within a second or two (a batch goes out every second); none dropped, no gaps, nothing refused.
        var metrics = await WaitForSampleAsync(controlPlane, "ztm_observations_accepted_total", atLeast: 12);
        Assert.Equal(0, Mesh.Sample(metrics, "ztm_observations_dropped_by_sidecars_total"));
        Assert.Equal(0, Mesh.Sample(metrics, "ztm_observation_sequence_gaps_total"));
        Assert.Equal(0, Mesh.Sample(metrics, "ztm_observation_batches_refused_total"));
        Assert.Equal(0, Mesh.Sample(await Mesh.MetricsAsync(ordersSidecar), "ztm_observations_dropped_total"));
    }

    private const string OrdersApi = """
        apiVersion: security.ztm.dev/v1
        kind: ApiSpec
        metadata: {name: orders-api, namespace: shop}
        spec:
          selector: {service: orders}
          mode: DryRun
          openapi:
            inline: |
              openapi: 3.1.0
              info: {title: orders, version: "1"}
              paths:
                /orders/{orderId}:
                  parameters:
                    - {name: orderId, in: path, required: true, schema: {type: integer}}
                  get:
                    operationId: getOrder
                    responses: {"200": {description: the order}}
                  delete:
                    operationId: deleteOrder
                    deprecated: true
                    responses: {"200": {description: deleted}}
                /health:
                  get:
                    operationId: health
                    responses: {"200": {description: up}}
        """;

    [Fact]
    public async Task Ztmctl_api_inventory_and_diff_show_the_templates_and_a_shadow_endpoint_against_the_declared_ApiSpec()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        await ordersSidecar.WaitForPolicyAsync(await controlPlane.ApplyPolicyAsync(OrdersApi));
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}";
        string[] paths = ["/orders/1", "/orders/2", "/orders/3", "/orders/4", "/orders/5", "/internal/debug"];
        foreach (var path in paths)
        {
            using var response = await http.GetAsync(new Uri(url + path));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        using (var deleted = await http.DeleteAsync(new Uri(url + "/orders/3")))
        {
            Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        }
        await WaitForSampleAsync(controlPlane, "ztm_observations_accepted_total", atLeast: paths.Length + 1);

        var (exit, table, _) = await _mesh.ZtmctlAsync("api", "inventory", "--service", "orders");
        Assert.Equal(0, exit);
        Assert.Contains("orders.shop: 3 endpoint(s), 7 request(s)", table, StringComparison.Ordinal);
        Assert.Matches(@"GET +/orders/\{order\} +5 ", table);
        Assert.Matches(@"DELETE +/orders/\{order\} +1 ", table);
        Assert.Matches(@"GET +/internal/debug +1 ", table);

        (exit, var json, _) = await _mesh.ZtmctlAsync("api", "inventory", "-o", "json");
        Assert.Equal(0, exit);
        using (var inventory = JsonDocument.Parse(json))
        {
            var service = Assert.Single(inventory.RootElement.GetProperty("services").EnumerateArray());
            Assert.Equal("orders.shop", service.GetProperty("service").GetString());
            var get = service.GetProperty("endpoints").EnumerateArray().Single(e => e.GetProperty("method").GetString() == "GET" && e.GetProperty("template").GetString() == "/orders/{order}");
            Assert.Equal(5, get.GetProperty("requests").GetInt64());
            Assert.Equal(["spiffe://cluster.local/ns/shop/sa/frontend"], get.GetProperty("callers").EnumerateArray().Select(c => c.GetString()));
            Assert.Equal(5, get.GetProperty("statusClasses").GetProperty("2xx").GetInt64());
        }

        (exit, table, _) = await _mesh.ZtmctlAsync("api", "diff", "--service", "orders.shop");
        Assert.Equal(0, exit);
        Assert.Contains("orders.shop against ApiSpec shop/orders-api (3 declared operation(s))", table, StringComparison.Ordinal);
        Assert.Matches(@"shadow +GET +/internal/debug +1 ", table);
        Assert.Matches(@"zombie +DELETE +/orders/\{orderId\} +1 ", table);
        Assert.Contains("1 shadow, 1 zombie, unused not known yet", table, StringComparison.Ordinal);

        (exit, json, _) = await _mesh.ZtmctlAsync("api", "diff", "--service", "orders", "-o", "json");
        Assert.Equal(0, exit);
        using (var diff = JsonDocument.Parse(json))
        {
            Assert.Equal(["shadow GET /internal/debug", "zombie DELETE /orders/{orderId}"],
                diff.RootElement.GetProperty("findings").EnumerateArray().Select(f => $"{f.GetProperty("kind").GetString()} {f.GetProperty("method").GetString()} {f.GetProperty("template").GetString()}"));
        }

        (exit, json, _) = await _mesh.ZtmctlAsync("api", "skeleton", "--service", "orders");
        Assert.Equal(0, exit);
        using (var skeleton = JsonDocument.Parse(json))
        {
            Assert.StartsWith("3.1", skeleton.RootElement.GetProperty("openapi").GetString(), StringComparison.Ordinal);
            Assert.True(skeleton.RootElement.GetProperty("paths").TryGetProperty("/internal/debug", out _));
        }

        // An unknown service: NOT_FOUND, exit 1, one line.
        var (code, stdout, stderr) = await _mesh.ZtmctlAsync("api", "diff", "--service", "payments");
        Assert.Equal(1, code);
        Assert.Empty(stdout);
        Assert.Equal("ztmctl: unknown service 'payments': nothing was observed of it and no ApiSpec selects it (NotFound)", stderr.Trim());

        // Standalone, the inventory is kept in the data directory: a restarted control plane still knows it.
        await controlPlane.Process.StopAsync(); // graceful: the snapshot is written at stop
        var restarted = await _mesh.StartControlPlaneAsync(name: "controlplane-2", dataDir: controlPlane.DataDir, port: controlPlane.Address.Port);
        await restarted.Process.WaitForLineAsync("API inventory loaded from ");
        (exit, table, _) = await _mesh.ZtmctlAsync("api", "inventory", "--service", "orders");
        Assert.Equal(0, exit);
        Assert.Contains("orders.shop: 3 endpoint(s), 7 request(s)", table, StringComparison.Ordinal);
        Assert.Matches(@"GET +/orders/\{order\} +5 ", table);
    }

    [Fact]
    public async Task A_tiny_buffer_drops_and_counts_and_the_control_plane_is_told_how_many()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var policy = await controlPlane.AllowNamespaceAsync("orders");
        var orders = await DemoApp.StartAsync(_mesh, "orders");
        var ordersSidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "orders"), "sidecar-orders",
            [.. orders.SidecarArguments, "--observation-buffer", "1"]);
        var frontend = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "frontend"), "sidecar-frontend", "--observations", "false");
        foreach (var sidecar in new[] { ordersSidecar, frontend })
        {
            await sidecar.WaitForIdentityAsync();
            await sidecar.Process.WaitForLineAsync("registered with the control plane ");
        }
        await ordersSidecar.WaitForPolicyAsync(policy);
        await ordersSidecar.Process.WaitForLineAsync("observation stream to the control plane open (buffer 1 observations)");
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };

        // Requests until the one-entry buffer overflowed (it is emptied once a second): requests are served all the same.
        double dropped = 0;
        for (var i = 0; i < 2_000 && dropped == 0; i++)
        {
            using var response = await http.GetAsync(new Uri($"http://orders:{orders.HttpPort}/orders/{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            if (i % 10 == 9)
            {
                dropped = Mesh.Sample(await Mesh.MetricsAsync(ordersSidecar), "ztm_observations_dropped_total");
            }
        }
        Assert.True(dropped > 0, "the buffer never overflowed");

        // The next batch says how many: the control plane counts what the sidecar dropped.
        await WaitForSampleAsync(controlPlane, "ztm_observations_dropped_by_sidecars_total", atLeast: dropped);
        Assert.DoesNotContain(frontend.Process.Lines, l => l.Contains("observation stream", StringComparison.Ordinal)); // --observations false
    }

    /// <summary>
    /// The control plane's metrics once <paramref name="name"/> reached <paramref name="atLeast"/>: read until then (the
    /// value only grows), up to <see cref="Mesh.Timeout"/>.
    /// </summary>
    private static async Task<string> WaitForSampleAsync(ControlPlane controlPlane, string name, double atLeast)
    {
        using var http = new HttpClient { Timeout = Mesh.Timeout };
        using var deadline = new CancellationTokenSource(Mesh.Timeout);
        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        string metrics;
        do
        {
            metrics = await http.GetStringAsync(controlPlane.Metrics, deadline.Token);
            if (Mesh.Sample(metrics, name) >= atLeast)
            {
                return metrics;
            }
        }
        while (await tick.WaitForNextTickAsync(deadline.Token));
        throw new TimeoutException($"{name} stayed at {Mesh.Sample(metrics, name).ToString(CultureInfo.InvariantCulture)}, below {atLeast.ToString(CultureInfo.InvariantCulture)}");
    }
}
