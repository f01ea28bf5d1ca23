using System.Text.Json.Serialization;
using k8s.Models;

namespace ZeroTrustMesh.Chart.Tests.Infrastructure;

// KubernetesClient has no models for the Prometheus Operator's monitoring.coreos.com/v1 kinds. These records are the part
// of its v1 API (ServiceMonitor, PodMonitor, PrometheusRule; field names and types as in its CRDs) that the chart may
// use; read with the same strict options, a field the operator does not define, or one in the wrong place, fails.
// Fields the chart does not use are left out on purpose: using one means adding it here, after checking the operator's API.

internal sealed record ServiceMonitor(string ApiVersion, string Kind, V1ObjectMeta Metadata, ServiceMonitorSpec Spec);

internal sealed record ServiceMonitorSpec(
    V1LabelSelector Selector,
    NamespaceSelector? NamespaceSelector,
    IReadOnlyList<ScrapeEndpoint> Endpoints,
    string? JobLabel = null);

internal sealed record PodMonitor(string ApiVersion, string Kind, V1ObjectMeta Metadata, PodMonitorSpec Spec);

internal sealed record PodMonitorSpec(
    V1LabelSelector Selector,
    NamespaceSelector? NamespaceSelector,
    IReadOnlyList<ScrapeEndpoint> PodMetricsEndpoints,
    string? JobLabel = null);

internal sealed record NamespaceSelector(bool? Any = null, IReadOnlyList<string>? MatchNames = null);

/// <summary>An entry of ServiceMonitor <c>endpoints</c> or PodMonitor <c>podMetricsEndpoints</c> (a port by name).</summary>
internal sealed record ScrapeEndpoint(
    string Port,
    string? Path = null,
    string? Scheme = null,
    string? Interval = null,
    string? ScrapeTimeout = null,
    bool? HonorLabels = null);

internal sealed record PrometheusRule(string ApiVersion, string Kind, V1ObjectMeta Metadata, PrometheusRuleSpec Spec);

internal sealed record PrometheusRuleSpec(IReadOnlyList<RuleGroup> Groups);

internal sealed record RuleGroup(
    string Name,
    IReadOnlyList<Rule> Rules,
    string? Interval = null,
    int? Limit = null,
    [property: JsonPropertyName("query_offset")] string? QueryOffset = null,
    IReadOnlyDictionary<string, string>? Labels = null);

/// <summary>
/// An alerting (<see cref="Alert"/>) or recording (<see cref="Record"/>) rule. <see cref="Expr"/> is int-or-string in the
/// CRD; a PromQL expression in practice.
/// </summary>
internal sealed record Rule(
    IntOrString Expr,
    string? Alert = null,
    string? Record = null,
    string? For = null,
    [property: JsonPropertyName("keep_firing_for")] string? KeepFiringFor = null,
    IReadOnlyDictionary<string, string>? Labels = null,
    IReadOnlyDictionary<string, string>? Annotations = null);
