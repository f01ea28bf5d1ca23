using System.Text.Json.Nodes;
using k8s.Models;
using ZeroTrustMesh.Chart.Tests.Infrastructure;

namespace ZeroTrustMesh.Chart.Tests;

public sealed class InjectionConfigTests
{
    private static JsonNode ConfigJson(RenderedChart chart)
    {
        var map = chart.Get<V1ConfigMap>("ConfigMap", "ztm-injection");
        Assert.Equal(["config.json"], map.Data.Keys);
        return JsonNode.Parse(map.Data["config.json"])!;
    }

    [HelmFact]
    public async Task Default_values_give_exactly_the_contracts_injection_config()
    {
        // k8s-contract.md, "Injection config".
        var expected = JsonNode.Parse("""
            {
              "image": "ztm-sidecar:0.1.0",
              "imagePullPolicy": "IfNotPresent",
              "controlPlaneAddress": "https://ztm-controlplane.ztm-system.svc:15012",
              "trustDomain": "cluster.local",
              "tokenAudience": "ztm-controlplane",
              "proxyUid": 1337,
              "resources": { "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "memory": "256Mi" } },
              "excludeInboundPorts": [],
              "excludeOutboundPorts": [],
              "excludeOutboundIPRanges": [],
              "decisionLog": { "enabled": false, "sizeLimit": "", "claimName": "" }
            }
            """);
        var actual = ConfigJson(await Renders.Default);
        Assert.True(JsonNode.DeepEquals(expected, actual), $"config.json:\n{actual}");
    }

    [HelmFact]
    public async Task The_injection_config_carries_the_values()
    {
        var config = ConfigJson(await Renders.AllFeatures);
        Assert.Equal("registry.example/ztm-sidecar:0.1.0-rc1", (string?)config["image"]);
        Assert.Equal("Always", (string?)config["imagePullPolicy"]);
        Assert.Equal("mesh.example", (string?)config["trustDomain"]);
        Assert.Equal("ztm-test-audience", (string?)config["tokenAudience"]);
        // The control plane reviews tokens for the audience the webhook mounts them with.
        var args = (await Renders.AllFeatures).Get<V1Deployment>("Deployment", "ztm-controlplane").Spec.Template.Spec.Containers.Single().Args;
        Assert.Equal("ztm-test-audience", args[args.IndexOf("--token-audience") + 1]);
        Assert.Equal(1337, (int)config["proxyUid"]!);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"requests":{"cpu":"20m","memory":"32Mi"},"limits":{"cpu":"500m","memory":"128Mi"}}"""), config["resources"]));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("[9901]"), config["excludeInboundPorts"]));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("[5432, 6379]"), config["excludeOutboundPorts"]));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""["169.254.169.254/32", "fd00::/8"]"""), config["excludeOutboundIPRanges"]));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"enabled": true, "sizeLimit": "2Gi", "claimName": ""}"""), config["decisionLog"]));

        var elsewhere = ConfigJson(await RenderedChart.RenderAsync(Helm.ChartDirectory, "mesh-ops"));
        Assert.Equal("https://ztm-controlplane.mesh-ops.svc:15012", (string?)elsewhere["controlPlaneAddress"]);
    }

    [HelmFact]
    public async Task The_control_plane_reads_the_injection_config_where_the_configmap_is_mounted()
    {
        var chart = await Renders.Default;
        var pod = chart.Get<V1Deployment>("Deployment", "ztm-controlplane").Spec.Template.Spec;
        var container = pod.Containers.Single();
        var path = container.Args[container.Args.IndexOf("--injection-config") + 1];
        var mount = container.VolumeMounts.Single(m => path.StartsWith(m.MountPath + "/", StringComparison.Ordinal));
        Assert.True(mount.ReadOnlyProperty);
        var volume = pod.Volumes.Single(v => v.Name == mount.Name);
        Assert.Equal("ztm-injection", volume.ConfigMap.Name);
        Assert.Contains(path[(mount.MountPath.Length + 1)..], chart.Get<V1ConfigMap>("ConfigMap", "ztm-injection").Data.Keys);
    }
}
