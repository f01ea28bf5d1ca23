using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// The dashboards and alert rules the chart ships, held to a real Prometheus scraping a real mesh: a control plane and
/// two sidecars with their apps, under a little allowed and denied traffic. Every PromQL expression of every panel
/// must return a number, every alert rule must load healthy and see its inputs, and every <c>/metrics</c> and the
/// rules file must pass <c>promtool</c>.
/// </summary>
public sealed partial class PrometheusDashboardsTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Namespace = "shop";
    private const string Workload = "orders";
    private const string ControlPlaneJob = "ztm-controlplane";

    /// <summary>What Grafana makes of <c>$__rate_interval</c> at a 1 s scrape interval is 4 s; a minute covers the whole test.</summary>
    private const string RateInterval = "1m";

    private const string OrdersRead = """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata:
          name: orders-read
          namespace: shop
        spec:
          selector:
            service: orders
          action: ALLOW
          rules:
            - from:
                - source:
                    namespaces: ["shop"]
              to:
                - operation:
                    methods: ["GET"]
        """;

    private const string OrdersHealth = """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata:
          name: orders-health
          namespace: shop
        spec:
          selector:
            service: orders
          action: ALLOW
          rules:
            - to:
                - operation:
                    methods: ["GET"]
                    paths: ["/healthz"]
        """;

    private static readonly string Chart = Path.Combine(Executables.RepoRoot, "charts", "zero-trust-mesh");
    private static readonly string RulesFile = Path.Combine(Chart, "rules", "ztm-alerts.yaml");

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [PrometheusFact]
    public async Task Every_dashboard_panel_and_alert_rule_evaluates_against_a_real_prometheus_scraping_a_mesh()
    {
        var elapsed = Stopwatch.StartNew();
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var policy = await controlPlane.ApplyPolicyAsync(OrdersRead);
        // Started side by side: five processes starting one after another is most of this test's time.
        var apps = await Task.WhenAll(DemoApp.StartAsync(_mesh, "orders"), DemoApp.StartAsync(_mesh, "frontend"));
        var (orders, frontend) = (apps[0], apps[1]);
        var (ordersToken, frontendToken) = (await controlPlane.MintTokenAsync(Namespace, "orders"), await controlPlane.MintTokenAsync(Namespace, "frontend"));
        var sidecars = await Task.WhenAll(
            _mesh.StartSidecarAsync(controlPlane, ordersToken, "sidecar-orders", orders.SidecarArguments),
            _mesh.StartSidecarAsync(controlPlane, frontendToken, "sidecar-frontend", frontend.SidecarArguments));
        var (ordersSidecar, frontendSidecar) = (sidecars[0], sidecars[1]);
        foreach (var sidecar in sidecars)
        {
            await sidecar.Process.WaitForLineAsync("registered with the control plane ");
            await sidecar.WaitForPolicyAsync(policy);
        }
        output.WriteLine($"mesh up after {elapsed.Elapsed.TotalSeconds:0.0}s");

        // Prometheus needs the ports, and takes a few seconds to start scraping (its discovery manager sends target
        // updates every 5 s): the first round of traffic runs meanwhile and creates every series the dashboards read;
        // the second, once Prometheus has scraped them, makes them move.
        await using var prometheus = await PrometheusServer.StartAsync(Path.Combine(_mesh.Root, "prometheus"),
            new Dictionary<string, IReadOnlyList<string>>
            {
                [ControlPlaneJob] = [controlPlane.Metrics.Authority],
                ["ztm-sidecars"] = [ordersSidecar.Admin.Authority, frontendSidecar.Admin.Authority],
            },
            [RulesFile], output);
        await TrafficAsync(ordersSidecar, frontendSidecar, orders, frontend);
        await prometheus.WaitForScrapesAsync(DateTimeOffset.UtcNow);
        output.WriteLine($"prometheus up and scraping after {elapsed.Elapsed.TotalSeconds:0.0}s");

        await TrafficAsync(ordersSidecar, frontendSidecar, orders, frontend);
        var acked = await AcksAsync(controlPlane);
        var changed = await controlPlane.ApplyPolicyAsync(OrdersHealth); // a push to orders' sidecar, and its ACK, while Prometheus watches
        await ordersSidecar.WaitForPolicyAsync(changed);
        await WaitForAsync("the control plane to count the ACK", async () => await AcksAsync(controlPlane) > acked);
        var trafficDone = DateTimeOffset.UtcNow;
        await prometheus.WaitForScrapesAsync(trafficDone);
        var rules = await prometheus.WaitForRuleEvaluationsAsync(trafficDone);
        output.WriteLine($"mesh, traffic and scrapes ready after {elapsed.Elapsed.TotalSeconds:0.0}s");

        // Dashboards: every target of every panel returns at least one finite number, with the template variables
        // set to values their own queries find.
        var checkedExpressions = 0;
        var failures = new List<string>();
        var dashboards = Directory.GetFiles(Path.Combine(Chart, "dashboards"), "*.json").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(3, dashboards.Count);
        foreach (var file in dashboards)
        {
            using var dashboard = JsonDocument.Parse(await File.ReadAllTextAsync(file));
            var variables = await ResolveVariablesAsync(prometheus, dashboard.RootElement, Path.GetFileName(file), failures);
            foreach (var (panel, expression) in Targets(dashboard.RootElement))
            {
                var promQl = Substitute(expression, variables);
                checkedExpressions++;
                var samples = await prometheus.QueryAsync(promQl);
                if (!samples.Any(s => double.IsFinite(s.Value)))
                {
                    failures.Add($"{Path.GetFileName(file)} / {panel}: {promQl} returned {(samples.Count == 0 ? "no data" : string.Join(", ", samples.Select(s => s.Value)))}");
                }
            }
        }

        // Alert rules: loaded healthy, evaluated without error; an expression that is quiet on a healthy mesh must
        // still see data in every series it selects (else it could never fire).
        var (rulesExit, rulesCheck) = await Promtool.RunAsync(null, "check", "rules", RulesFile);
        Assert.True(rulesExit == 0, $"promtool check rules {RulesFile}:\n{rulesCheck}");
        Assert.Equal($"{rules.Count}", RulesFound().Match(rulesCheck).Groups["count"].Value);
        var firing = new List<string>();
        foreach (var rule in rules)
        {
            var name = rule.GetProperty("name").GetString()!;
            var expression = rule.GetProperty("query").GetString()!;
            if (rule.GetProperty("health").GetString() != "ok" || rule.TryGetProperty("lastError", out var error) && error.GetString() is { Length: > 0 })
            {
                failures.Add($"rule {name}: health {rule.GetProperty("health")}, {rule}");
            }
            checkedExpressions++;
            if ((await prometheus.QueryAsync(expression)).Count > 0)
            {
                firing.Add(name);
                continue;
            }
            var selectors = PromQl.Selectors(expression);
            if (selectors.Count == 0)
            {
                failures.Add($"rule {name}: no series selector found in {PromQl.OneLine(expression)}");
            }
            foreach (var selector in selectors)
            {
                checkedExpressions++;
                if ((await prometheus.QueryAsync(selector)).Count == 0)
                {
                    failures.Add($"rule {name}: {selector} selects no series (in {PromQl.OneLine(expression)})");
                }
            }
        }
        output.WriteLine($"{checkedExpressions} expressions evaluated; rules whose condition holds now: {(firing.Count == 0 ? "none" : string.Join(", ", firing))}");
        Assert.DoesNotContain("ZtmControlPlaneDown", firing); // it is up: absent() must see it
        Assert.DoesNotContain("ZtmSidecarCertificateExpired", firing);

        // promtool check metrics on what each target serves.
        foreach (var target in new[] { controlPlane.Metrics, new Uri(ordersSidecar.Admin, "/metrics"), new Uri(frontendSidecar.Admin, "/metrics") })
        {
            using var http = new HttpClient { Timeout = Mesh.Timeout };
            var body = await http.GetStringAsync(target);
            var (exit, lint) = await Promtool.RunAsync(body, "check", "metrics");
            if (exit != 0 || lint.Trim().Length > 0)
            {
                failures.Add($"promtool check metrics {target}: exit {exit}\n{lint}");
            }
        }

        Assert.True(failures.Count == 0, string.Join('\n', failures));
        output.WriteLine($"done in {elapsed.Elapsed.TotalSeconds:0.0}s");
    }

    /// <summary>
    /// <c>promtool test rules</c> on synthetic series (<c>Prometheus/ztm-alerts.test.yaml</c>): every alert fires, with
    /// its labels and annotations, exactly when its condition has held long enough, and not before.
    /// </summary>
    [PrometheusFact]
    public async Task Every_alert_fires_on_the_series_that_should_fire_it_and_not_before()
    {
        var tests = Path.Combine(Executables.RepoRoot, "tests", "ZeroTrustMesh.EndToEnd.Tests", "Prometheus", "ztm-alerts.test.yaml");

        var (exit, report) = await Promtool.RunAsync(null, "test", "rules", tests);

        Assert.True(exit == 0, $"promtool test rules {tests}:\n{report}");
        Assert.Contains("SUCCESS", report, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("absent(ztm_config_version)", "ztm_config_version")]
    [InlineData("sum by (job, instance) (increase(ztm_config_nacks_total[10m])) > 0", "ztm_config_nacks_total")]
    [InlineData("ztm_certificate_expiry_timestamp_seconds < time()", "ztm_certificate_expiry_timestamp_seconds")]
    [InlineData("""sum by (le) (rate(ztm_request_duration_seconds_bucket{direction="inbound"}[1m]) and on (instance) ztm_requests_total{direction="inbound",destination=~"spiffe://[^/]+/ns/shop/sa/orders"})""",
        """ztm_request_duration_seconds_bucket{direction="inbound"}""", """ztm_requests_total{direction="inbound",destination=~"spiffe://[^/]+/ns/shop/sa/orders"}""")]
    [InlineData("""(sum by (destination) (rate(a{code=~"401|403"}[5m])) > 1) unless (sum(rate(b[5m])) <= 3 * sum(rate(c{x="}"}[1h] offset 5m)))""",
        """a{code=~"401|403"}""", "b", """c{x="}"}""")]
    [InlineData("""{__name__="up"} == bool 0 or vector(1)""", """{__name__="up"}""")]
    public void PromQl_selectors_are_found_and_operators_functions_and_label_lists_are_not(string expression, params string[] selectors) =>
        Assert.Equal(selectors, PromQl.Selectors(expression));

    /// <summary>
    /// Requests from frontend to orders (GET allowed, POST denied by policy), from orders to frontend (denied: no ALLOW
    /// policy), and a connection to orders' inbound port that does not speak TLS (refused at the handshake).
    /// </summary>
    private static async Task TrafficAsync(Sidecar ordersSidecar, Sidecar frontendSidecar, DemoApp orders, DemoApp frontend)
    {
        using var fromFrontend = new HttpClient(Mesh.HostAddressed(frontendSidecar)) { Timeout = Mesh.Timeout };
        for (var i = 0; i < 3; i++)
        {
            using var allowed = await fromFrontend.GetAsync(new Uri($"http://orders:{orders.HttpPort}/orders/{i}"));
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }
        using (var denied = await fromFrontend.PostAsync(new Uri($"http://orders:{orders.HttpPort}/orders/1"), new StringContent("{}")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        }
        using var fromOrders = new HttpClient(Mesh.HostAddressed(ordersSidecar)) { Timeout = Mesh.Timeout };
        using (var noPolicy = await fromOrders.GetAsync(new Uri($"http://frontend:{frontend.HttpPort}/")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, noPolicy.StatusCode);
        }
        using var plaintext = new TcpClient();
        await plaintext.ConnectAsync(ordersSidecar.Inbound);
        var stream = plaintext.GetStream();
        await stream.WriteAsync("GET / HTTP/1.1\r\nHost: orders\r\n\r\n"u8.ToArray());
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        try
        {
            Assert.Equal(0, await stream.ReadAsync(new byte[64], timeout.Token)); // closed without an answer
        }
        catch (IOException)
        {
            // or reset: refused either way
        }
    }

    private static async Task<double> AcksAsync(ControlPlane controlPlane)
    {
        using var http = new HttpClient { Timeout = Mesh.Timeout };
        return Mesh.Sample(await http.GetStringAsync(controlPlane.Metrics), "ztm_config_acks_total");
    }

    private static async Task WaitForAsync(string what, Func<Task<bool>> condition)
    {
        var timeout = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(timeout.Elapsed < MeshProcess.DefaultTimeout, $"no {what} within {MeshProcess.DefaultTimeout.TotalSeconds}s");
            await Task.Delay(50);
        }
    }

    /// <summary>Every (panel title, expression) of a dashboard, rows and nested panels included.</summary>
    private static IEnumerable<(string Panel, string Expression)> Targets(JsonElement dashboard)
    {
        foreach (var panel in dashboard.GetProperty("panels").EnumerateArray())
        {
            IEnumerable<JsonElement> panels = panel.TryGetProperty("panels", out var inner) ? inner.EnumerateArray().Prepend(panel) : [panel];
            foreach (var nested in panels)
            {
                if (nested.TryGetProperty("targets", out var targets))
                {
                    foreach (var target in targets.EnumerateArray())
                    {
                        yield return (nested.GetProperty("title").GetString()!, target.GetProperty("expr").GetString()!);
                    }
                }
            }
        }
    }

    /// <summary>
    /// The dashboard's query variables, each resolved as Grafana would (<c>label_values(selector, label)</c> through the
    /// series API, then the variable's regex) and checked to offer the value this mesh must have; that value is used.
    /// </summary>
    private static async Task<Dictionary<string, string>> ResolveVariablesAsync(PrometheusServer prometheus, JsonElement dashboard, string file, List<string> failures)
    {
        var expected = new Dictionary<string, string> { ["namespace"] = Namespace, ["workload"] = Workload, ["job"] = ControlPlaneJob };
        var resolved = new Dictionary<string, string>();
        foreach (var variable in dashboard.GetProperty("templating").GetProperty("list").EnumerateArray())
        {
            if (variable.GetProperty("type").GetString() != "query")
            {
                continue;
            }
            var name = variable.GetProperty("name").GetString()!;
            var query = variable.GetProperty("query");
            var text = query.ValueKind == JsonValueKind.String ? query.GetString()! : query.GetProperty("query").GetString()!;
            var labelValues = LabelValues().Match(Substitute(text, resolved));
            Assert.True(labelValues.Success, $"{file}: variable {name}: '{text}' is not label_values(selector, label)");
            var label = labelValues.Groups["label"].Value;
            var values = (await prometheus.SeriesAsync(labelValues.Groups["selector"].Value))
                .Select(s => s.TryGetProperty(label, out var v) ? v.GetString()! : "")
                .Select(v => Extract(variable, v))
                .Where(v => v.Length > 0)
                .Distinct()
                .ToList();
            if (!values.Contains(expected[name]))
            {
                failures.Add($"{file}: variable {name} offers [{string.Join(", ", values)}], not {expected[name]}");
            }
            resolved[name] = expected[name];
        }
        return resolved;
    }

    /// <summary>What a Grafana variable regex (<c>/…/</c>, first group if any) keeps of a label value; "" when it does not match.</summary>
    private static string Extract(JsonElement variable, string value)
    {
        var pattern = variable.TryGetProperty("regex", out var regex) ? regex.GetString() ?? "" : "";
        if (pattern.Length == 0)
        {
            return value;
        }
        var match = Regex.Match(value, pattern[1..pattern.LastIndexOf('/')]);
        return !match.Success ? "" : match.Groups.Count > 1 ? match.Groups[1].Value : match.Value;
    }

    private static string Substitute(string expression, IReadOnlyDictionary<string, string> variables)
    {
        var text = expression.Replace("$__rate_interval", RateInterval, StringComparison.Ordinal);
        foreach (var (name, value) in variables)
        {
            text = text.Replace("${" + name + "}", value, StringComparison.Ordinal).Replace("$" + name, value, StringComparison.Ordinal);
        }
        Assert.DoesNotContain("$", text, StringComparison.Ordinal);
        return text;
    }

    [GeneratedRegex(@"^\s*label_values\((?<selector>.+),\s*(?<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")]
    private static partial Regex LabelValues();

    [GeneratedRegex(@"SUCCESS: (?<count>\d+) rules found")]
    private static partial Regex RulesFound();
}
