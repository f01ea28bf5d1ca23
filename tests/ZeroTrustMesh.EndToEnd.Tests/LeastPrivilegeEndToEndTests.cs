using System.Globalization;
using System.Net;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Issue 19, section 5 through real processes (control plane, sidecars, demo app, ztmctl): traffic of the quickstart's
/// frontend to orders is observed; <c>ztmctl policy suggest</c> writes a policy from it; applied as AUDIT,
/// <c>ztmctl policy audit-report</c> counts 0 would-deny for the legitimate calls and one per call outside them; applied
/// as ALLOW (in place of the namespace-wide policy), every observed call passes and another caller, another method or
/// another path is denied.
/// </summary>
public sealed class LeastPrivilegeEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Checkout = "spiffe://cluster.local/ns/shop/sa/checkout";

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task Suggested_policy_allows_exactly_the_observed_calls_as_audit_then_as_allow()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        var checkout = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "checkout"), "sidecar-checkout");
        await checkout.WaitForIdentityAsync();
        await checkout.Process.WaitForLineAsync("registered with the control plane ");
        using var asFrontend = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        using var asCheckout = new HttpClient(Mesh.HostAddressed(checkout)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}";

        // The legitimate traffic: the frontend reads orders and creates them.
        async Task<int> LegitimateAsync(int from)
        {
            for (var i = 0; i < 4; i++)
            {
                Assert.Equal(HttpStatusCode.OK, await StatusAsync(asFrontend, HttpMethod.Get, $"{url}/orders/{from + i}"));
            }
            Assert.Equal(HttpStatusCode.OK, await StatusAsync(asFrontend, HttpMethod.Post, $"{url}/orders"));
            return 5;
        }
        var observed = await LegitimateAsync(100);
        await WaitForAcceptedAsync(controlPlane, observed);

        // Suggest: one policy for orders, one rule per caller x method x template, evidence in comments and annotations.
        var auditFile = Path.Combine(_mesh.Root, "suggested-audit.yaml");
        var allowFile = Path.Combine(_mesh.Root, "suggested-allow.yaml");
        var (exit, stdout, stderr) = await _mesh.ZtmctlAsync("policy", "suggest", "--namespace", "shop", "--since", "1h", "-f", auditFile);
        Assert.True(exit == 0, stderr);
        Assert.Contains($"1 policy(ies), 2 rule(s) written to {auditFile}", stdout, StringComparison.Ordinal);
        var audit = await File.ReadAllTextAsync(auditFile);
        output.WriteLine(audit);
        Assert.Contains("action: AUDIT", audit, StringComparison.Ordinal);
        Assert.Contains("paths: [\"/orders/{*}\"]", audit, StringComparison.Ordinal);
        Assert.Contains("# rule 0: 1 request(s), first seen ", audit, StringComparison.Ordinal);
        Assert.Contains("# rule 1: 4 request(s), first seen ", audit, StringComparison.Ordinal);
        Assert.Contains("suggest.ztm.dev/rule-1: \"4 request(s), first seen ", audit, StringComparison.Ordinal);
        (exit, _, stderr) = await _mesh.ZtmctlAsync("policy", "suggest", "--namespace", "shop", "--action", "ALLOW", "-f", allowFile);
        Assert.True(exit == 0, stderr);
        Assert.Equal(audit.Replace("action: AUDIT", "action: ALLOW", StringComparison.Ordinal), StripHeader(await File.ReadAllTextAsync(allowFile), audit));

        // An unknown namespace: NOT_FOUND, exit 1, one line.
        var (code, outText, errText) = await _mesh.ZtmctlAsync("policy", "suggest", "--namespace", "billing");
        Assert.Equal(1, code);
        Assert.Empty(outText);
        Assert.StartsWith("ztmctl: namespace 'billing': nothing was observed of its workloads", errText.Trim(), StringComparison.Ordinal);
        Assert.Single(errText.Trim().Split('\n'));

        // AUDIT: the namespace-wide ALLOW still decides; the suggestion only counts.
        await ordersSidecar.WaitForPolicyAsync(await ApplyAsync(auditFile));
        observed += await LegitimateAsync(200);
        await WaitForAcceptedAsync(controlPlane, observed);
        var report = await AuditReportAsync();
        Assert.Equal((5L, 0L), (report.Requests, report.WouldDeny));

        string[] outside = ["another caller: checkout GET /orders/1", "another method: frontend DELETE /orders/1", "another path: frontend GET /admin/users"];
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(asCheckout, HttpMethod.Get, $"{url}/orders/1"));
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(asFrontend, HttpMethod.Delete, $"{url}/orders/1"));
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(asFrontend, HttpMethod.Get, $"{url}/admin/users"));
        observed += outside.Length;
        await WaitForAcceptedAsync(controlPlane, observed);
        report = await AuditReportAsync();
        Assert.Equal((5L + outside.Length, (long)outside.Length), (report.Requests, report.WouldDeny));
        Assert.Contains($"{Checkout} GET /orders/1", report.Recent);
        Assert.Contains($"{DataPlaneFixture.FrontendId} DELETE /orders/1", report.Recent);
        Assert.Contains($"{DataPlaneFixture.FrontendId} GET /admin/users", report.Recent);
        (exit, var table, _) = await _mesh.ZtmctlAsync("policy", "audit-report", "-n", "shop");
        Assert.Equal(0, exit);
        Assert.Matches(@"shop/suggested-orders +8 +3 ", table);

        // ALLOW: the suggestion replaces the namespace-wide policy.
        await ApplyAsync(allowFile);
        (exit, var deleted, stderr) = await _mesh.ZtmctlAsync("delete", "authorizationpolicy", "orders-from-shop", "-n", "shop");
        Assert.True(exit == 0, stderr);
        await ordersSidecar.WaitForPolicyAsync(deleted.Split('\n').Single(l => l.StartsWith("policy version ", StringComparison.Ordinal))["policy version ".Length..].Trim());
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.OK, await StatusAsync(asFrontend, HttpMethod.Get, $"{url}/orders/{300 + i}"));
        }
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(asFrontend, HttpMethod.Post, $"{url}/orders"));
        Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(asCheckout, HttpMethod.Get, $"{url}/orders/1"));
        Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(asFrontend, HttpMethod.Delete, $"{url}/orders/1"));
        Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(asFrontend, HttpMethod.Get, $"{url}/admin/users"));
        Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(asFrontend, HttpMethod.Get, $"{url}/orders/1/lines"));
        Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(asFrontend, HttpMethod.Post, $"{url}/orders/1"));

        // 'ztmctl policy test' reads the templates as the sidecar does.
        var port = orders.HttpPort.ToString(CultureInfo.InvariantCulture);
        (exit, var verdict, _) = await _mesh.ZtmctlAsync("policy", "test", "--from", DataPlaneFixture.FrontendId, "--to", "orders.shop", "--method", "GET", "--path", "/orders/5", "--port", port);
        Assert.Equal(0, exit);
        Assert.Contains("allowed by ALLOW policy 'shop/suggested-orders' rule 1", verdict, StringComparison.Ordinal);
        (exit, _, _) = await _mesh.ZtmctlAsync("policy", "test", "--from", DataPlaneFixture.FrontendId, "--to", "orders.shop", "--method", "GET", "--path", "/orders/5/lines", "--port", port);
        Assert.Equal(4, exit);
    }

    private static async Task<HttpStatusCode> StatusAsync(HttpClient http, HttpMethod method, string url)
    {
        using var request = new HttpRequestMessage(method, new Uri(url));
        if (method == HttpMethod.Post)
        {
            request.Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json");
        }
        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }

    /// <summary>The ALLOW file with its first comment line (the time it was written) taken from the AUDIT one.</summary>
    private static string StripHeader(string allow, string audit) =>
        string.Concat(audit.AsSpan(0, audit.IndexOf('\n', StringComparison.Ordinal)), allow.AsSpan(allow.IndexOf('\n', StringComparison.Ordinal)));

    private async Task<string> ApplyAsync(string file)
    {
        var (exit, json, stderr) = await _mesh.ZtmctlAsync("apply", "-f", file, "-o", "json");
        Assert.True(exit == 0, stderr);
        using var applied = JsonDocument.Parse(json);
        return applied.RootElement.GetProperty("version").GetString()!;
    }

    private async Task<(long Requests, long WouldDeny, string[] Recent)> AuditReportAsync()
    {
        var (exit, json, stderr) = await _mesh.ZtmctlAsync("policy", "audit-report", "--namespace", "shop", "-o", "json");
        Assert.True(exit == 0, stderr);
        using var report = JsonDocument.Parse(json);
        var policy = Assert.Single(report.RootElement.EnumerateArray());
        Assert.Equal("shop/suggested-orders", policy.GetProperty("policy").GetString());
        return (policy.GetProperty("requests").GetInt64(), policy.GetProperty("wouldDeny").GetInt64(),
            [.. policy.GetProperty("recentWouldDeny").EnumerateArray().Select(s => s.GetString()!)]);
    }

    /// <summary>Waits until the control plane accepted <paramref name="atLeast"/> observations (a batch goes out every second).</summary>
    private static async Task WaitForAcceptedAsync(ControlPlane controlPlane, int atLeast)
    {
        using var http = new HttpClient { Timeout = Mesh.Timeout };
        using var deadline = new CancellationTokenSource(Mesh.Timeout);
        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        string metrics;
        do
        {
            metrics = await http.GetStringAsync(controlPlane.Metrics, deadline.Token);
            if (Mesh.Sample(metrics, "ztm_observations_accepted_total") >= atLeast)
            {
                return;
            }
        }
        while (await tick.WaitForNextTickAsync(deadline.Token));
        throw new TimeoutException($"ztm_observations_accepted_total stayed below {atLeast.ToString(CultureInfo.InvariantCulture)}");
    }
}
