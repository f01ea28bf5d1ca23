using System.Net;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Anomaly response through real processes (issue 19, section 3): the orders sidecar reports what it serves on the
/// observation stream, the control plane's detector sees the frontend caller jump, and the throttle it decides is
/// pushed on the config stream and enforced by the orders sidecar (429 with Retry-After naming the anomaly) within a
/// second; <c>ztmctl anomalies</c> lists it with its evidence.
/// </summary>
public sealed class AnomalyResponseEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task A_caller_that_jumps_is_throttled_at_the_sidecar_within_1_s_of_detection_and_listed_with_its_evidence()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        // Short history and a low floor, so the test runs in seconds; the detector's window is its own (10 s).
        await controlPlane.ApplyPolicyAsync("""
            apiVersion: security.ztm.dev/v1
            kind: AnomalyPolicy
            metadata: {name: orders-anomalies, namespace: shop}
            spec:
              selector: {service: orders}
              mode: Enforce
              minimumHistory: 2s
              minimumRate: 60
              throttleRate: 1
              quarantineAfter: 1h
              coolOff: 1h
            """);
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}/orders/1";

        // The caller's normal: one request a second for a few seconds (this paces traffic, it waits for nothing).
        using (var pace = new PeriodicTimer(TimeSpan.FromSeconds(1)))
        {
            for (var i = 0; i < 4; i++)
            {
                using var normal = await http.GetAsync(url);
                Assert.Equal(HttpStatusCode.OK, normal.StatusCode);
                await pace.WaitForNextTickAsync();
            }
        }

        // The jump: as fast as one connection goes, until the sidecar refuses it by anomaly response.
        var jump = DateTimeOffset.UtcNow;
        HttpResponseMessage? refused = null;
        var sent = 0;
        while (refused is null)
        {
            Assert.True(DateTimeOffset.UtcNow - jump < TimeSpan.FromSeconds(30), $"not throttled 30 s after the jump ({sent} requests)");
            var response = await http.GetAsync(url);
            sent++;
            if (response.StatusCode == HttpStatusCode.OK)
            {
                response.Dispose();
                continue;
            }
            refused = response;
        }
        var refusedAt = DateTimeOffset.UtcNow;
        using (refused)
        {
            var body = await refused.Content.ReadAsStringAsync();
            Assert.True(refused.StatusCode == HttpStatusCode.TooManyRequests, $"{refused.StatusCode}: {body}");
            Assert.Contains("throttled by anomaly response to 1/min", body, StringComparison.Ordinal);
            Assert.Contains("AnomalyPolicy shop/orders-anomalies", body, StringComparison.Ordinal);
            Assert.NotNull(refused.Headers.RetryAfter?.Delta);
        }

        var (code, stdout, _) = await _mesh.ZtmctlAsync("anomalies", "-o", "json");
        Assert.Equal(0, code);
        using var listing = JsonDocument.Parse(stdout);
        var transition = listing.RootElement.GetProperty("transitions").EnumerateArray()
            .Single(t => t.GetProperty("route").GetString() == "*" && t.GetProperty("to").GetString() == "throttled");
        Assert.Equal(DataPlaneFixture.FrontendId, transition.GetProperty("caller").GetString());
        Assert.Equal("shop/orders", transition.GetProperty("workload").GetString());
        Assert.Equal("throttled to 1/min", transition.GetProperty("action").GetString());
        var evidence = transition.GetProperty("evidence");
        Assert.True(evidence.GetProperty("ratePerMinute").GetDouble() >= 60);
        Assert.True(evidence.GetProperty("ratePerMinute").GetDouble() > 10 * evidence.GetProperty("baselinePerMinute").GetDouble());
        var detected = transition.GetProperty("at").GetDateTimeOffset();
        // The sidecar enforces the restriction from the moment it applied the config that carries it (its log line's time).
        var appliedLine = await ordersSidecar.Process.WaitForLineAsync(l => l.Contains(" applied: ", StringComparison.Ordinal) && l.Contains(" caller restrictions", StringComparison.Ordinal)
            && !l.Contains(" 0 caller restrictions", StringComparison.Ordinal), "config with caller restrictions applied");
        var enforced = DateTimeOffset.Parse(appliedLine[..appliedLine.IndexOf(' ', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture);
        output.WriteLine($"jump {jump:O}, detected {detected:O} ({(detected - jump).TotalMilliseconds:0} ms), enforced by the sidecar {enforced:O} ({(enforced - detected).TotalMilliseconds:0} ms after detection), "
            + $"first refusal received {refusedAt:O} ({(refusedAt - detected).TotalMilliseconds:0} ms after detection), {sent} requests");
        Assert.True(detected - jump <= TimeSpan.FromSeconds(10), $"detected {detected - jump} after the jump");
        Assert.True(enforced - detected <= TimeSpan.FromSeconds(1), $"enforced {enforced - detected} after detection");
        Assert.Contains(listing.RootElement.GetProperty("current").EnumerateArray(), c => c.GetProperty("state").GetString() == "throttled");

        var (tableCode, table, _) = await _mesh.ZtmctlAsync("anomalies");
        Assert.Equal(0, tableCode);
        Assert.Contains($"{DataPlaneFixture.FrontendId} -> shop/orders *: normal -> throttled (Enforce, shop/orders-anomalies)", table, StringComparison.Ordinal);

        var metrics = await Mesh.MetricsAsync(ordersSidecar);
        Assert.True(Mesh.Sample(metrics, "ztm_rate_limited_total", ("policy", "anomaly-response")) >= 1);
    }
}
