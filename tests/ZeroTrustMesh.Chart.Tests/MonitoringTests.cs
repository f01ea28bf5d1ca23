using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using k8s.Models;
using ZeroTrustMesh.Chart.Tests.Infrastructure;

namespace ZeroTrustMesh.Chart.Tests;

public sealed partial class MonitoringTests
{
    /// <summary>
    /// ServiceMonitor, PodMonitor and PrometheusRule have no KubernetesClient model: they are read strictly into the
    /// records of <see cref="PrometheusOperator"/>, and their values checked as the operator's CRD does (durations).
    /// </summary>
    internal static object ReadStrictly(RenderedObject rendered)
    {
        object model = rendered.Kind switch
        {
            "ServiceMonitor" => KubernetesModels.Deserialize<ServiceMonitor>(rendered.Json, rendered.ToString()),
            "PodMonitor" => KubernetesModels.Deserialize<PodMonitor>(rendered.Json, rendered.ToString()),
            "PrometheusRule" => KubernetesModels.Deserialize<PrometheusRule>(rendered.Json, rendered.ToString()),
            var other => throw new InvalidOperationException($"{rendered}: no model for monitoring.coreos.com/v1 {other}"),
        };
        switch (model)
        {
            case ServiceMonitor monitor:
                Assert.All(monitor.Spec.Endpoints, e => Assert.Matches(Duration(), e.Interval ?? "0"));
                break;
            case PodMonitor monitor:
                Assert.All(monitor.Spec.PodMetricsEndpoints, e => Assert.Matches(Duration(), e.Interval ?? "0"));
                break;
            case PrometheusRule rule:
                Assert.NotEmpty(rule.Spec.Groups);
                Assert.Equal(rule.Spec.Groups.Count, rule.Spec.Groups.Select(g => g.Name).Distinct().Count()); // list-map key
                foreach (var group in rule.Spec.Groups)
                {
                    Assert.False(string.IsNullOrEmpty(group.Name));
                    Assert.Matches(Duration(), group.Interval ?? "0");
                    foreach (var r in group.Rules)
                    {
                        Assert.True(r.Alert is null != (r.Record is null), $"{rendered}: group {group.Name}: a rule is either an alert or a record");
                        Assert.False(string.IsNullOrWhiteSpace(r.Expr?.Value), $"{rendered}: group {group.Name}: a rule needs expr");
                        Assert.Matches(Duration(), r.For ?? "0");
                    }
                }
                break;
        }
        return model;
    }

    [GeneratedRegex("^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")]
    private static partial Regex Duration();

    [HelmFact]
    public async Task The_service_monitor_scrapes_the_control_plane_services_metrics_port()
    {
        var chart = await Renders.AllFeatures;
        var monitor = (ServiceMonitor)ReadStrictly(chart.Single("ServiceMonitor", "ztm-controlplane"));
        var service = chart.Get<V1Service>("Service", "ztm-controlplane");
        Assert.True(LabelSelectors.Matches(monitor.Spec.Selector, service.Metadata.Labels.AsReadOnly()));
        Assert.Equal(["ztm-system"], monitor.Spec.NamespaceSelector!.MatchNames!);
        var endpoint = Assert.Single(monitor.Spec.Endpoints);
        Assert.Equal(("metrics", "/metrics", "http", "15s"), (endpoint.Port, endpoint.Path, endpoint.Scheme, endpoint.Interval));
        Assert.Equal(15014, service.Spec.Ports.Single(p => p.Name == endpoint.Port).Port);
        Assert.Equal("prometheus", monitor.Metadata.Labels["release"]);
    }

    [HelmFact]
    public async Task The_pod_monitor_scrapes_every_sidecars_health_port()
    {
        var chart = await Renders.AllFeatures;
        var monitor = (PodMonitor)ReadStrictly(chart.Single("PodMonitor", "ztm-sidecars"));
        var endpoint = Assert.Single(monitor.Spec.PodMetricsEndpoints);
        Assert.Equal(("ztm-health", "/metrics"), (endpoint.Port, endpoint.Path));
        Assert.Empty(monitor.Spec.Selector.MatchLabels ?? new Dictionary<string, string>());
        Assert.Empty(monitor.Spec.Selector.MatchExpressions ?? []);
        Assert.Equal(["shop", "payments"], monitor.Spec.NamespaceSelector!.MatchNames!);

        using var copy = ChartCopy.Create();
        var everywhere = await RenderedChart.RenderAsync(copy.Directory, valuesYaml: "monitoring: {podMonitor: {enabled: true}}");
        Assert.True(((PodMonitor)ReadStrictly(everywhere.Single("PodMonitor", "ztm-sidecars"))).Spec.NamespaceSelector!.Any);
    }

    [HelmFact]
    public async Task The_prometheus_rule_carries_the_rules_file_as_its_spec()
    {
        var chart = await Renders.AllFeatures;
        var rule = chart.Single("PrometheusRule", "ztm-alerts");
        ReadStrictly(rule);
        var file = Yaml.ToJsonSingle(await File.ReadAllTextAsync(Path.Combine(Helm.FixturesDirectory, "rules", "ztm-alerts.yaml")));
        Assert.True(JsonNode.DeepEquals(file, rule.Json["spec"]), $"spec differs from the rules file:\n{rule.Json["spec"]}");
    }

    [HelmFact]
    public async Task The_prometheus_rule_without_a_rules_file_fails_with_the_reason()
    {
        using var copy = ChartCopy.Create(withFixtures: false);
        var result = await Helm.TemplateAsync(copy.Directory, valuesYaml: "monitoring: {prometheusRule: {enabled: true}}");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("the chart has no rules/ztm-alerts.yaml", result.Error, StringComparison.Ordinal);

        var without = await RenderedChart.RenderAsync(copy.Directory);
        Assert.DoesNotContain(without.Objects, o => o.Name.StartsWith("ztm-dashboard-", StringComparison.Ordinal));
    }

    [HelmFact]
    public async Task Each_dashboard_file_is_a_configmap_for_grafanas_sidecar_with_the_file_unchanged()
    {
        var chart = await Renders.AllFeatures;
        foreach (var (file, name) in new[] { ("fixture-overview.json", "ztm-dashboard-fixture-overview"), ("Fixture_Control.Plane.json", "ztm-dashboard-fixture-control-plane") })
        {
            var map = chart.Get<V1ConfigMap>("ConfigMap", name);
            Assert.Equal("1", map.Metadata.Labels["grafana_dashboard"]);
            Assert.Equal("platform", map.Metadata.Labels["team"]);
            Assert.Equal("ZeroTrustMesh", map.Metadata.Annotations["grafana_folder"]);
            var expected = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(Helm.FixturesDirectory, "dashboards", file)));
            Assert.True(JsonNode.DeepEquals(expected, JsonNode.Parse(map.Data[file])), $"{name} differs from {file}");
        }

        using var copy = ChartCopy.Create();
        var off = await RenderedChart.RenderAsync(copy.Directory, valuesYaml: "monitoring: {dashboards: {enabled: false}}");
        Assert.DoesNotContain(off.Objects, o => o.Name.StartsWith("ztm-dashboard-", StringComparison.Ordinal));
    }

    [HelmFact]
    public async Task The_dashboards_the_chart_ships_are_grafana_json_in_configmaps()
    {
        var files = Directory.Exists(Path.Combine(Helm.ChartDirectory, "dashboards"))
            ? Directory.GetFiles(Path.Combine(Helm.ChartDirectory, "dashboards"), "*.json")
            : [];
        var maps = (await Renders.Default).Objects.Where(o => o.Name.StartsWith("ztm-dashboard-", StringComparison.Ordinal)).ToList();
        Assert.Equal(files.Length, maps.Count);
        foreach (var map in maps)
        {
            var data = Assert.Single(KubernetesModels.Deserialize<V1ConfigMap>(map.Json, map.ToString()).Data);
            using var dashboard = JsonDocument.Parse(data.Value);
            Assert.Equal(JsonValueKind.Object, dashboard.RootElement.ValueKind);
            Assert.True(dashboard.RootElement.TryGetProperty("title", out _), $"{data.Key} has no title");
        }
    }
}
