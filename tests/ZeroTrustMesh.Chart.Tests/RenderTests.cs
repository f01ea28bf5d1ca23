using System.Text.Json.Nodes;
using k8s.Models;
using ZeroTrustMesh.Chart.Tests.Infrastructure;

namespace ZeroTrustMesh.Chart.Tests;

public sealed class RenderTests
{
    [HelmFact]
    public async Task Helm_lint_passes_strictly_with_default_values_and_with_every_feature_on()
    {
        (await Helm.LintAsync(Helm.ChartDirectory)).EnsureSuccess("helm lint (default values)");
        using var copy = ChartCopy.Create();
        (await Helm.LintAsync(copy.Directory, Renders.AllFeaturesValues)).EnsureSuccess("helm lint (every feature on)");
    }

    [HelmTheory]
    [MemberData(nameof(Variants))]
    public async Task Every_rendered_object_reads_strictly_into_its_model_and_writes_back_unchanged(string variant)
    {
        var chart = await Renders.Get(variant);
        Assert.NotEmpty(chart.Objects);
        foreach (var rendered in chart.Objects)
        {
            if (rendered.ApiVersion == "monitoring.coreos.com/v1")
            {
                MonitoringTests.ReadStrictly(rendered);
                continue;
            }
            var model = KubernetesModels.Deserialize(rendered);
            // A value the model read differently from what was written (a number as a string, a quantity or a
            // duration re-spelled) shows up as a difference here.
            var written = KubernetesModels.Serialize(model);
            Assert.True(JsonNode.DeepEquals(rendered.Json, written),
                $"{rendered} changes when read into {model.GetType().Name} and written back:\n{rendered.Json}\n---\n{written}");
        }
    }

    public static TheoryData<string> Variants => Renders.Variants;

    [HelmFact]
    public async Task Default_values_render_the_control_plane_the_crds_and_the_webhook_and_nothing_optional()
    {
        var chart = await Renders.Default;
        var expected = new[]
        {
            "ClusterRole ztm-controlplane", "ClusterRoleBinding ztm-controlplane", "ConfigMap ztm-injection",
            "CustomResourceDefinition anomalypolicies.security.ztm.dev", "CustomResourceDefinition apispecs.security.ztm.dev",
            "CustomResourceDefinition authorizationpolicies.security.ztm.dev", "CustomResourceDefinition peerauthentications.security.ztm.dev",
            "CustomResourceDefinition ratelimitpolicies.security.ztm.dev", "CustomResourceDefinition requestauthentications.security.ztm.dev",
            "Deployment ztm-controlplane", "MutatingWebhookConfiguration ztm-sidecar-injector", "PodDisruptionBudget ztm-controlplane",
            "Role ztm-controlplane", "RoleBinding ztm-controlplane", "Service ztm-controlplane", "ServiceAccount ztm-controlplane",
        };
        // Dashboards ship in the chart's dashboards/ folder (on by default): one ConfigMap each, whatever is there.
        var actual = chart.Objects.Where(o => !o.Name.StartsWith("ztm-dashboard-", StringComparison.Ordinal))
            .Select(o => $"{o.Kind} {o.Name}").Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(expected, actual);
        Assert.All(chart.Objects.Where(o => o.Kind is not ("ClusterRole" or "ClusterRoleBinding" or "CustomResourceDefinition" or "MutatingWebhookConfiguration")),
            o => Assert.Equal("ztm-system", o.Namespace));
    }

    [HelmFact]
    public async Task Every_feature_on_adds_the_monitors_the_rule_the_dashboards_and_the_volume()
    {
        var chart = await Renders.AllFeatures;
        foreach (var (kind, name) in new[]
        {
            ("ServiceMonitor", "ztm-controlplane"), ("PodMonitor", "ztm-sidecars"), ("PrometheusRule", "ztm-alerts"),
            ("ConfigMap", "ztm-dashboard-fixture-overview"), ("ConfigMap", "ztm-dashboard-fixture-control-plane"),
            ("PersistentVolumeClaim", "ztm-controlplane-data"), ("Role", "ztm-controlplane"), ("RoleBinding", "ztm-controlplane"),
        })
        {
            chart.Single(kind, name);
        }
    }

    [HelmFact]
    public async Task The_notes_say_how_to_label_a_namespace_apply_policy_find_the_leader_and_warn_about_one_replica()
    {
        var one = await RenderNotesAsync("mesh-ops", null);
        Assert.Contains("kubectl -n mesh-ops rollout status deploy/ztm-controlplane", one, StringComparison.Ordinal);
        Assert.Contains("kubectl label namespace NAME ztm.dev/inject=enabled", one, StringComparison.Ordinal);
        Assert.Contains("namespace mesh-ops and kube-system are never injected", one, StringComparison.Ordinal);
        Assert.Contains("kubectl apply -f policy.yaml", one, StringComparison.Ordinal);
        Assert.Contains("2 dashboard ConfigMaps", one, StringComparison.Ordinal);
        Assert.Contains("2 control-plane replica(s) share the CA (Secret ztm-ca)", one, StringComparison.Ordinal);
        Assert.Contains("kubectl -n mesh-ops get lease ztm-controlplane-leader", one, StringComparison.Ordinal);
        Assert.DoesNotContain("WARNING", one, StringComparison.Ordinal);
        Assert.DoesNotContain("ServiceMonitor", one, StringComparison.Ordinal);

        var three = await RenderNotesAsync("ztm-system", "controlPlane: {replicas: 1}\nmonitoring: {serviceMonitor: {enabled: true}}\ncrds: {install: false}");
        Assert.Contains("WARNING: controlPlane.replicas is 1", three, StringComparison.Ordinal);
        Assert.Contains("ServiceMonitor ztm-controlplane", three, StringComparison.Ordinal);
        Assert.Contains("install the CRDs yourself", three, StringComparison.Ordinal);
    }

    /// <summary>helm template prints no NOTES.txt: a copy of the chart renders it into a ConfigMap through tpl.</summary>
    private static async Task<string> RenderNotesAsync(string @namespace, string? values)
    {
        using var copy = ChartCopy.Create();
        File.Copy(Path.Combine(copy.Directory, "templates", "NOTES.txt"), Path.Combine(copy.Directory, "notes-under-test.txt"));
        await File.WriteAllTextAsync(Path.Combine(copy.Directory, "templates", "notes-under-test.yaml"), """
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: notes-under-test}
            data:
              notes: {{ tpl (.Files.Get "notes-under-test.txt") . | toJson }}
            """);
        var chart = await RenderedChart.RenderAsync(copy.Directory, @namespace, values);
        return chart.Get<V1ConfigMap>("ConfigMap", "notes-under-test").Data["notes"];
    }

    [HelmFact]
    public async Task Clusters_older_than_1_29_are_refused_because_injected_sidecars_are_native_sidecars()
    {
        var old = await Helm.RunAsync(["template", "ztm", Helm.ChartDirectory, "--kube-version", "1.28.9"]);
        Assert.NotEqual(0, old.ExitCode);
        Assert.Contains("chart requires kubeVersion: >=1.29.0-0", old.Error, StringComparison.Ordinal);
        (await Helm.RunAsync(["template", "ztm", Helm.ChartDirectory, "--kube-version", "1.29.0"])).EnsureSuccess("helm template for 1.29");
    }

    [HelmFact]
    public async Task The_strict_reader_refuses_an_unknown_field_and_a_wrong_type()
    {
        var deployment = (await Renders.Default).Single("Deployment", "ztm-controlplane");
        var misspelled = (JsonObject)deployment.Json.DeepClone();
        misspelled["spec"]!["template"]!["spec"]!["containers"]![0]!["readinessprobe"] = new JsonObject();
        var unknown = Assert.Throws<InvalidOperationException>(() => KubernetesModels.Deserialize(deployment with { Json = misspelled }));
        Assert.Contains("readinessprobe", unknown.Message, StringComparison.Ordinal);

        var mistyped = (JsonObject)deployment.Json.DeepClone();
        mistyped["spec"]!["replicas"] = "1";
        Assert.Throws<InvalidOperationException>(() => KubernetesModels.Deserialize(deployment with { Json = mistyped }));
        Assert.IsType<V1Deployment>(KubernetesModels.Deserialize(deployment));
    }

    [Fact]
    public void Kubernetes_yaml_pitfalls_are_refused_by_the_yaml_reader()
    {
        Assert.Throws<FormatException>(() => RenderedChart.Parse("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: on}\n"));
        Assert.Throws<FormatException>(() => RenderedChart.Parse("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, name: b}\n"));
        var parsed = RenderedChart.Parse("---\n# Source: x\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: \"1\", b: '2'}\n");
        Assert.Equal("1", (string?)parsed.Objects.Single().Json["data"]!["a"]);
    }
}
