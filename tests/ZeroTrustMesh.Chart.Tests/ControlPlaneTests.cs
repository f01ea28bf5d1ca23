using k8s.Models;
using ZeroTrustMesh.Chart.Tests.Infrastructure;

namespace ZeroTrustMesh.Chart.Tests;

public sealed class ControlPlaneTests
{
    [HelmFact]
    public async Task The_control_plane_runs_with_the_contracts_arguments_and_its_namespace_from_the_downward_api()
    {
        var pod = (await Renders.Default).Get<V1Deployment>("Deployment", "ztm-controlplane").Spec.Template.Spec;
        var container = Assert.Single(pod.Containers);
        Assert.Equal("ztm-controlplane:0.1.0", container.Image);
        Assert.Equal(
        [
            "--listen", "0.0.0.0", "--data-dir", "/var/lib/ztm", "--trust-domain", "cluster.local", "--metrics-port", "15014",
            "--webhook-port", "15017", "--webhook-dns", "ztm-controlplane.ztm-system.svc",
            "--webhook-dns", "ztm-controlplane.ztm-system.svc.cluster.local",
            "--injection-config", "/etc/ztm/injection/config.json", "--webhook-configuration", "ztm-sidecar-injector",
            "--kubernetes", "--token-audience", "ztm-controlplane", "--ca-secret", "ztm-ca",
        ], container.Args);
        Assert.Equal(["/usr/local/bin/ztm-controlplane"], container.Command); // k8s-contract: binaries in images
        var ns = container.Env.Single(e => e.Name == "POD_NAMESPACE");
        Assert.Equal("metadata.namespace", ns.ValueFrom.FieldRef.FieldPath);
        // The replica's identity in the leader Lease.
        Assert.Equal("metadata.name", container.Env.Single(e => e.Name == "POD_NAME").ValueFrom.FieldRef.FieldPath);
        Assert.Equal("/var/lib/ztm/operator/config", container.Env.Single(e => e.Name == "ZTM_CONFIG").Value);
    }

    [HelmFact]
    public async Task The_control_plane_is_non_root_with_a_read_only_root_filesystem_and_writes_only_to_its_volumes()
    {
        var pod = (await Renders.Default).Get<V1Deployment>("Deployment", "ztm-controlplane").Spec.Template.Spec;
        var container = pod.Containers.Single();
        Assert.Equal((true, 65532L, 65532L), (pod.SecurityContext.RunAsNonRoot!.Value, pod.SecurityContext.RunAsUser!.Value, pod.SecurityContext.RunAsGroup!.Value));
        Assert.Equal("RuntimeDefault", pod.SecurityContext.SeccompProfile.Type);
        var security = container.SecurityContext;
        Assert.True(security.ReadOnlyRootFilesystem);
        Assert.False(security.AllowPrivilegeEscalation);
        Assert.False(security.Privileged);
        Assert.Equal(65532L, security.RunAsUser);
        Assert.Equal(["ALL"], security.Capabilities.Drop);
        Assert.Null(security.Capabilities.Add);

        var volumes = pod.Volumes.ToDictionary(v => v.Name);
        var mounts = container.VolumeMounts.ToDictionary(m => m.MountPath, m => m.Name);
        Assert.Equal("data", mounts["/var/lib/ztm"]);
        Assert.NotNull(volumes["data"].EmptyDir);
        Assert.Equal("injection-config", mounts["/etc/ztm/injection"]);
        Assert.Equal("ztm-injection", volumes["injection-config"].ConfigMap.Name);
        Assert.NotNull(volumes["tmp"].EmptyDir);
        Assert.Equal(mounts.Values.Order(), volumes.Keys.Order());
    }

    [HelmFact]
    public async Task Probes_ports_and_the_service_agree_on_names_and_numbers()
    {
        var chart = await Renders.Default;
        var container = chart.Get<V1Deployment>("Deployment", "ztm-controlplane").Spec.Template.Spec.Containers.Single();
        var ports = container.Ports.ToDictionary(p => p.Name, p => p.ContainerPort);
        Assert.Equal(new Dictionary<string, int> { ["grpc"] = 15012, ["webhook"] = 15017, ["metrics"] = 15014 }, ports);
        Assert.Equal("grpc", container.StartupProbe.TcpSocket.Port.Value);
        Assert.Equal("webhook", container.ReadinessProbe.TcpSocket.Port.Value);
        Assert.Equal(("/metrics", "metrics"), (container.LivenessProbe.HttpGet.Path, container.LivenessProbe.HttpGet.Port.Value));

        var service = chart.Get<V1Service>("Service", "ztm-controlplane");
        Assert.Equal("ClusterIP", service.Spec.Type);
        Assert.Equal(
            [("grpc", 15012, "grpc"), ("webhook", 15017, "webhook"), ("metrics", 15014, "metrics")],
            service.Spec.Ports.Select(p => (p.Name, p.Port, p.TargetPort.Value)));
        var deployment = chart.Get<V1Deployment>("Deployment", "ztm-controlplane");
        Assert.True(LabelSelectors.Matches(new V1LabelSelector { MatchLabels = service.Spec.Selector }, deployment.Spec.Template.Metadata.Labels.AsReadOnly()));
        Assert.True(LabelSelectors.Matches(deployment.Spec.Selector, deployment.Spec.Template.Metadata.Labels.AsReadOnly()));
    }

    [HelmFact]
    public async Task Replicas_resources_anti_affinity_and_the_disruption_budget_follow_the_values()
    {
        var chart = await Renders.Default;
        var deployment = chart.Get<V1Deployment>("Deployment", "ztm-controlplane");
        Assert.Equal(2, deployment.Spec.Replicas); // highly available by default
        var requests = deployment.Spec.Template.Spec.Containers.Single().Resources.Requests;
        Assert.Equal(("100m", "128Mi"), (requests["cpu"].ToString(), requests["memory"].ToString()));
        var soft = Assert.Single(deployment.Spec.Template.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution);
        Assert.Equal("kubernetes.io/hostname", soft.PodAffinityTerm.TopologyKey);
        Assert.True(LabelSelectors.Matches(soft.PodAffinityTerm.LabelSelector, deployment.Spec.Template.Metadata.Labels.AsReadOnly()));
        var budget = chart.Get<V1PodDisruptionBudget>("PodDisruptionBudget", "ztm-controlplane");
        Assert.Equal("1", budget.Spec.MinAvailable.Value.ToString());
        Assert.Null(budget.Spec.MaxUnavailable);
        Assert.True(LabelSelectors.Matches(budget.Spec.Selector, deployment.Spec.Template.Metadata.Labels.AsReadOnly()));

        var three = await RenderedChart.RenderAsync(Helm.ChartDirectory, valuesYaml: "controlPlane: {replicas: 3, antiAffinity: hard}");
        var spread = three.Get<V1Deployment>("Deployment", "ztm-controlplane");
        Assert.Equal(3, spread.Spec.Replicas);
        Assert.Equal("kubernetes.io/hostname", Assert.Single(spread.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution).TopologyKey);

        // One replica: no budget, which would block every node drain.
        var one = await RenderedChart.RenderAsync(Helm.ChartDirectory, valuesYaml: "controlPlane: {replicas: 1}");
        Assert.Empty(one.OfKind("PodDisruptionBudget"));

        var none = await RenderedChart.RenderAsync(Helm.ChartDirectory, valuesYaml: "controlPlane: {antiAffinity: none, podDisruptionBudget: {enabled: false}}");
        Assert.Null(none.Get<V1Deployment>("Deployment", "ztm-controlplane").Spec.Template.Spec.Affinity);
        Assert.Empty(none.OfKind("PodDisruptionBudget"));
    }

    [HelmFact]
    public async Task Every_feature_on_sets_images_scheduling_persistence_and_extra_arguments()
    {
        var chart = await Renders.AllFeatures;
        var deployment = chart.Get<V1Deployment>("Deployment", "ztm-controlplane");
        var pod = deployment.Spec.Template.Spec;
        var container = pod.Containers.Single();
        Assert.Equal(("registry.example/ztm-controlplane:0.1.0-rc1", "Always"), (container.Image, container.ImagePullPolicy));
        Assert.Equal(["--l4-mode", "on", "--svid-ttl", "30m"], container.Args.TakeLast(4));
        Assert.Equal("mesh-ca", container.Args[container.Args.IndexOf("--ca-secret") + 1]);
        Assert.Contains("ztm-controlplane.ztm-system.svc.k8s.example", container.Args);
        Assert.Equal("mesh.example", container.Args[container.Args.IndexOf("--trust-domain") + 1]);
        Assert.Equal("registry-credentials", pod.ImagePullSecrets.Single().Name);
        Assert.Equal("linux", pod.NodeSelector["kubernetes.io/os"]);
        Assert.Equal("dedicated", pod.Tolerations.Single().Key);
        Assert.Equal("system-cluster-critical", pod.PriorityClassName);
        Assert.Equal("platform", deployment.Spec.Template.Metadata.Annotations["example.com/owner"]);
        Assert.Equal("ztm-controlplane-data", pod.Volumes.Single(v => v.Name == "data").PersistentVolumeClaim.ClaimName);
        Assert.Equal("Recreate", deployment.Spec.Strategy.Type);
        var claim = chart.Get<V1PersistentVolumeClaim>("PersistentVolumeClaim", "ztm-controlplane-data");
        Assert.Equal(("fast", "2Gi"), (claim.Spec.StorageClassName, claim.Spec.Resources.Requests["storage"].ToString()));
        Assert.Equal("keep", claim.Metadata.Annotations["helm.sh/resource-policy"]);
    }

    [HelmTheory]
    [InlineData("", false)] // default "off": the flag is left out, the control plane's default
    [InlineData("controlPlane: {l4Mode: \"off\"}", false)]
    [InlineData("controlPlane: {l4Mode: off}", false)] // YAML 1.1: unquoted off is false
    [InlineData("controlPlane: {l4Mode: false}", false)]
    [InlineData("controlPlane: {l4Mode: \"on\"}", true)]
    [InlineData("controlPlane: {l4Mode: on}", true)] // YAML 1.1: unquoted on is true
    [InlineData("controlPlane: {l4Mode: true}", true)]
    public async Task L4_mode_is_the_control_planes_l4_mode_flag(string values, bool on)
    {
        var chart = await RenderedChart.RenderAsync(Helm.ChartDirectory, valuesYaml: values);
        var args = chart.Get<V1Deployment>("Deployment", "ztm-controlplane").Spec.Template.Spec.Containers.Single().Args;
        var at = args.IndexOf("--l4-mode");
        Assert.Equal(on, at >= 0);
        if (on)
        {
            Assert.Equal("on", args[at + 1]);
            Assert.Single(args, a => a == "--l4-mode");
        }
    }

    [HelmFact]
    public async Task Persistence_with_several_replicas_fails_with_the_reason()
    {
        var result = await Helm.TemplateAsync(Helm.ChartDirectory, valuesYaml: "controlPlane: {replicas: 2, persistence: {enabled: true}}");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("controlPlane.persistence.enabled needs controlPlane.replicas: 1", result.Error, StringComparison.Ordinal);
    }

    [HelmFact]
    public async Task A_changed_injection_config_changes_the_pod_template()
    {
        var before = (await Renders.Default).Get<V1Deployment>("Deployment", "ztm-controlplane");
        var after = (await RenderedChart.RenderAsync(Helm.ChartDirectory, valuesYaml: "injection: {excludeOutboundPorts: [5432]}"))
            .Get<V1Deployment>("Deployment", "ztm-controlplane");
        Assert.NotEqual(before.Spec.Template.Metadata.Annotations["checksum/injection-config"], after.Spec.Template.Metadata.Annotations["checksum/injection-config"]);
    }
}
