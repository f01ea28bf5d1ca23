using k8s.Models;
using ZeroTrustMesh.Chart.Tests.Infrastructure;

namespace ZeroTrustMesh.Chart.Tests;

public sealed class WebhookTests
{
    [HelmFact]
    public async Task Both_webhooks_call_the_control_plane_on_pod_creation_and_fail_closed()
    {
        var chart = await Renders.Default;
        var configuration = chart.Get<V1MutatingWebhookConfiguration>("MutatingWebhookConfiguration", "ztm-sidecar-injector");
        Assert.Equal(["namespace.sidecar-injector.ztm.dev", "object.sidecar-injector.ztm.dev"], configuration.Webhooks.Select(w => w.Name));
        var service = chart.Get<V1Service>("Service", "ztm-controlplane");
        foreach (var webhook in configuration.Webhooks)
        {
            var target = webhook.ClientConfig.Service;
            Assert.Equal(("ztm-controlplane", "ztm-system", "/inject", 15017), (target.Name, target.NamespaceProperty, target.Path, target.Port));
            Assert.Equal(service.Metadata.Name, target.Name);
            Assert.Contains(service.Spec.Ports, p => p.Port == target.Port && p.Name == "webhook");
            Assert.Null(webhook.ClientConfig.Url);
            Assert.Null(webhook.ClientConfig.CaBundle); // the control plane writes it; Helm must not reset it on upgrade
            Assert.Equal(("Fail", "None", "IfNeeded", "Equivalent"), (webhook.FailurePolicy, webhook.SideEffects, webhook.ReinvocationPolicy, webhook.MatchPolicy));
            Assert.Equal(["v1"], webhook.AdmissionReviewVersions);
            Assert.Equal(10, webhook.TimeoutSeconds);
            var rule = Assert.Single(webhook.Rules);
            Assert.Equal(["CREATE"], rule.Operations);
            Assert.Equal([""], rule.ApiGroups);
            Assert.Equal(["v1"], rule.ApiVersions);
            Assert.Equal(["pods"], rule.Resources);
            Assert.Equal("Namespaced", rule.Scope);
        }
    }

    /// <summary>Which of the two webhooks the API server calls for a pod with these labels in a namespace with these.</summary>
    private static string[] Called(V1MutatingWebhookConfiguration configuration, string @namespace, string? namespaceLabel, string? podLabel)
    {
        var namespaceLabels = new Dictionary<string, string> { ["kubernetes.io/metadata.name"] = @namespace };
        if (namespaceLabel is not null)
        {
            namespaceLabels["ztm.dev/inject"] = namespaceLabel;
        }
        var podLabels = podLabel is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["ztm.dev/inject"] = podLabel };
        return
        [
            .. configuration.Webhooks
                .Where(w => LabelSelectors.Matches(w.NamespaceSelector, namespaceLabels) && LabelSelectors.Matches(w.ObjectSelector, podLabels))
                .Select(w => w.Name.Split('.')[0]),
        ];
    }

    [HelmTheory]
    [InlineData("shop", "enabled", null, "namespace")]
    [InlineData("shop", "enabled", "true", "namespace")]
    [InlineData("shop", "enabled", "false", "")]
    [InlineData("shop", null, "true", "object")]
    [InlineData("shop", null, null, "")]
    [InlineData("shop", null, "false", "")]
    [InlineData("shop", "disabled", "true", "")]
    [InlineData("shop", "something-else", "true", "object")]
    [InlineData("mesh-ops", "enabled", null, "")]
    [InlineData("mesh-ops", null, "true", "")]
    [InlineData("kube-system", "enabled", "true", "")]
    [InlineData("monitoring", "enabled", "true", "")]
    public async Task Pods_reach_exactly_one_webhook_when_selected_and_never_in_the_release_namespace_or_kube_system(
        string @namespace, string? namespaceLabel, string? podLabel, string expected)
    {
        var chart = await Releases.MeshOps;
        var configuration = chart.Get<V1MutatingWebhookConfiguration>("MutatingWebhookConfiguration", "ztm-sidecar-injector");
        Assert.Equal(expected, string.Join(',', Called(configuration, @namespace, namespaceLabel, podLabel)));
    }

    [HelmFact]
    public async Task The_webhooks_follow_the_release_namespace_and_the_values()
    {
        var chart = await Releases.MeshOps;
        var configuration = chart.Get<V1MutatingWebhookConfiguration>("MutatingWebhookConfiguration", "ztm-sidecar-injector");
        Assert.All(configuration.Webhooks, w =>
        {
            Assert.Equal("mesh-ops", w.ClientConfig.Service.NamespaceProperty);
            Assert.Equal(5, w.TimeoutSeconds);
            var excluded = w.NamespaceSelector.MatchExpressions.Single(e => e.Key == "kubernetes.io/metadata.name");
            Assert.Equal("NotIn", excluded.OperatorProperty);
            Assert.Equal(["mesh-ops", "kube-system", "monitoring"], excluded.Values);
        });
        var container = chart.Get<V1Deployment>("Deployment", "ztm-controlplane").Spec.Template.Spec.Containers.Single();
        Assert.Contains("ztm-controlplane.mesh-ops.svc", container.Args);
        Assert.Contains("ztm-controlplane.mesh-ops.svc.cluster.local", container.Args);
    }

    private static class Releases
    {
        private static readonly Lazy<Task<RenderedChart>> MeshOpsRender = new(() => RenderedChart.RenderAsync(
            Helm.ChartDirectory, "mesh-ops", "webhook: {timeoutSeconds: 5, excludeNamespaces: [monitoring, kube-system]}"));

        /// <summary>Released into namespace mesh-ops, with one more excluded namespace (and kube-system given twice).</summary>
        public static Task<RenderedChart> MeshOps => MeshOpsRender.Value;
    }
}
