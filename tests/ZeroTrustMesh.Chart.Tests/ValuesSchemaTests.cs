using ZeroTrustMesh.Chart.Tests.Infrastructure;

namespace ZeroTrustMesh.Chart.Tests;

public sealed class ValuesSchemaTests
{
    [HelmTheory]
    [InlineData("replicas: 2", "(root): Additional property replicas is not allowed")]
    [InlineData("controlPlane: {replicas: two}", "controlPlane.replicas: Invalid type. Expected: integer, given: string")]
    [InlineData("controlPlane: {replicas: 0}", "controlPlane.replicas: Must be greater than or equal to 1")]
    [InlineData("controlPlane: {replicaCount: 2}", "controlPlane: Additional property replicaCount is not allowed")]
    [InlineData("controlPlane: {antiAffinity: sometimes}", "controlPlane.antiAffinity: controlPlane.antiAffinity must be one of the following")]
    [InlineData("controlPlane: {l4Mode: auto}", "controlPlane.l4Mode: controlPlane.l4Mode must be one of the following")]
    [InlineData("controlPlane: {l4Mode: 1}", "controlPlane.l4Mode: controlPlane.l4Mode must be one of the following")]
    [InlineData("controlPlane: {persistence: {enabled: \"yes\"}}", "controlPlane.persistence.enabled: Invalid type. Expected: boolean, given: string")]
    [InlineData("controlPlane: {resources: {requests: {cpu: lots}}}", "controlPlane.resources.requests.cpu")]
    [InlineData("images: {sidecar: {repository: ztm-sidecar, pullPolicy: Sometimes}}", "images.sidecar.pullPolicy")]
    [InlineData("images: {sidecar: {tag: 1}}", "images.sidecar.tag: Invalid type. Expected: string, given: integer")]
    [InlineData("injection: {proxyUid: \"1337\"}", "injection.proxyUid: Invalid type. Expected: integer, given: string")]
    [InlineData("injection: {excludeInboundPorts: [http]}", "injection.excludeInboundPorts.0: Invalid type. Expected: integer, given: string")]
    [InlineData("injection: {excludeOutboundPorts: [70000]}", "injection.excludeOutboundPorts.0: Must be less than or equal to 65535")]
    [InlineData("injection: {excludeOutboundIPRanges: [10.0.0.1]}", "injection.excludeOutboundIPRanges.0: Does not match pattern")]
    [InlineData("injection: {excludeInboundPorts: 15021}", "injection.excludeInboundPorts: Invalid type. Expected: array, given: integer")]
    [InlineData("webhook: {timeoutSeconds: 31}", "webhook.timeoutSeconds: Must be less than or equal to 30")]
    [InlineData("webhook: {failurePolicy: Ignore}", "webhook: Additional property failurePolicy is not allowed")]
    [InlineData("webhook: {excludeNamespaces: [Kube_System]}", "webhook.excludeNamespaces.0: Does not match pattern")]
    [InlineData("crds: {install: 1}", "crds.install: Invalid type. Expected: boolean, given: integer")]
    [InlineData("rbac: {kubernetesBackend: true}", "(root): Additional property rbac is not allowed")] // always on since the replicas share state
    [InlineData("controlPlane: {caSecret: Mesh_CA}", "controlPlane.caSecret: Does not match pattern")]
    [InlineData("controlPlane: {podDisruptionBudget: {maxUnavailable: 1}}", "controlPlane.podDisruptionBudget: Additional property maxUnavailable is not allowed")]
    [InlineData("monitoring: {serviceMonitor: {interval: 30}}", "monitoring.serviceMonitor.interval: Invalid type. Expected: string, given: integer")]
    [InlineData("monitoring: {prometheusRule: {enabled: true, labels: {release: 1}}}", "monitoring.prometheusRule.labels.release: Invalid type. Expected: string, given: integer")]
    [InlineData("monitoring: {grafana: {enabled: true}}", "monitoring: Additional property grafana is not allowed")]
    [InlineData("trustDomain: [cluster.local]", "trustDomain: Invalid type. Expected: string, given: array")]
    public async Task Values_of_the_wrong_type_or_unknown_keys_fail_helm_template_naming_the_key(string values, string message)
    {
        var result = await Helm.TemplateAsync(Helm.ChartDirectory, valuesYaml: values);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("values don't meet the specifications of the schema", result.Error, StringComparison.Ordinal);
        Assert.Contains(message, result.Error, StringComparison.Ordinal);
        Assert.Empty(result.Output);
    }

    [HelmFact]
    public async Task The_default_values_and_every_feature_on_pass_the_schema()
    {
        (await Helm.TemplateAsync(Helm.ChartDirectory)).EnsureSuccess("default values");
        using var copy = ChartCopy.Create();
        (await Helm.TemplateAsync(copy.Directory, valuesYaml: Renders.AllFeaturesValues)).EnsureSuccess("every feature on");
    }

    [Fact]
    public void Every_key_of_values_yaml_is_in_the_schema_and_the_schema_has_no_key_values_yaml_lacks()
    {
        var values = Yaml.ToJsonSingle(File.ReadAllText(Path.Combine(Helm.ChartDirectory, "values.yaml")))!.AsObject();
        var schema = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Helm.ChartDirectory, "values.schema.json")))!.AsObject();
        var fromValues = Keys(values, "").ToHashSet();
        var fromSchema = SchemaKeys(schema, schema, "").ToHashSet();
        fromSchema.Remove("global"); // Helm's own, for subcharts
        Assert.Equal(fromSchema.Order(StringComparer.Ordinal), fromValues.Order(StringComparer.Ordinal));
    }

    /// <summary>Paths of the values' settings (objects with fixed keys are walked; free maps and lists are leaves).</summary>
    private static IEnumerable<string> Keys(System.Text.Json.Nodes.JsonObject node, string path)
    {
        foreach (var (key, value) in node)
        {
            var at = path.Length == 0 ? key : $"{path}.{key}";
            yield return at;
            if (value is System.Text.Json.Nodes.JsonObject child && !FreeMaps.Contains(at))
            {
                foreach (var nested in Keys(child, at))
                {
                    yield return nested;
                }
            }
        }
    }

    private static readonly HashSet<string> FreeMaps =
    [
        "controlPlane.resources.requests", "controlPlane.resources.limits", "controlPlane.nodeSelector", "controlPlane.podAnnotations",
        "injection.resources.requests", "injection.resources.limits",
        "monitoring.serviceMonitor.labels", "monitoring.podMonitor.labels", "monitoring.prometheusRule.labels",
        "monitoring.dashboards.labels", "monitoring.dashboards.annotations",
    ];

    private static IEnumerable<string> SchemaKeys(System.Text.Json.Nodes.JsonObject root, System.Text.Json.Nodes.JsonObject node, string path)
    {
        if ((string?)node["$ref"] is { } reference)
        {
            node = root["definitions"]![reference["#/definitions/".Length..]]!.AsObject();
        }
        if (node["properties"] is not System.Text.Json.Nodes.JsonObject properties)
        {
            yield break;
        }
        foreach (var (key, value) in properties)
        {
            var at = path.Length == 0 ? key : $"{path}.{key}";
            yield return at;
            foreach (var nested in SchemaKeys(root, value!.AsObject(), at))
            {
                yield return nested;
            }
        }
    }
}
