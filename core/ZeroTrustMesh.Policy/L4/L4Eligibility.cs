using System.Collections.Frozen;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.L4;

/// <summary>
/// Which of a workload's HTTP ports may be relayed as bytes after the mTLS check (L4 mode, as Istio's ztunnel does),
/// and why the others may not. A port is L4 when L4 mode is on and nothing that applies to the port needs more than the
/// caller's verified identity, its namespace, its source address and the destination port.
/// </summary>
public sealed class PortModes
{
    private readonly FrozenDictionary<int, string> _l7Ports;

    public PortModes(bool enabled, string? allPortsL7, IEnumerable<KeyValuePair<int, string>> l7Ports)
    {
        Enabled = enabled;
        AllPortsL7 = string.IsNullOrEmpty(allPortsL7) ? null : allPortsL7;
        _l7Ports = l7Ports.ToFrozenDictionary();
    }

    /// <summary>L4 mode off: every HTTP port is L7 (the default, and what a sidecar holds before its first config).</summary>
    public static PortModes Off { get; } = new(false, null, []);

    /// <summary>Whether the operator turned L4 mode on (the control plane's <c>--l4-mode on</c>).</summary>
    public bool Enabled { get; }

    /// <summary>Why every port is L7 (a resource that works per request on every port); null when none does.</summary>
    public string? AllPortsL7 { get; }

    /// <summary>Ports that are L7 because a resource needs L7 attributes there, each with the first reason.</summary>
    public IReadOnlyDictionary<int, string> L7Ports => _l7Ports;

    /// <summary>Null when <paramref name="port"/> is L4; otherwise why it is L7.</summary>
    public string? L7Reason(int port) =>
        !Enabled ? "L4 mode is off" : AllPortsL7 ?? _l7Ports.GetValueOrDefault(port);

    public bool IsL4(int port) => L7Reason(port) is null;

    public override string ToString() =>
        !Enabled ? "off" : AllPortsL7 is { } all ? $"every port L7 ({all})"
        : _l7Ports.Count == 0 ? "every port L4" : $"L4 except {string.Join(", ", _l7Ports.OrderBy(p => p.Key).Select(p => $"{p.Key} ({p.Value})"))}";
}

/// <summary>
/// The one place that decides L4 eligibility, from the resources that apply to a workload (what its sidecar receives).
/// What forces L7, and where:
/// <list type="bullet">
/// <item>RequestAuthentication, RateLimitPolicy, ApiSpec and AnomalyPolicy: every port (they work per request);</item>
/// <item>a caller restriction from anomaly response (throttle or quarantine per request): every port;</item>
/// <item>an AuthorizationPolicy rule with <c>methods</c> or <c>paths</c>: the ports of that operation (every port when it
///   names none); with <c>requestPrincipals</c> or a <c>when</c> condition other than <c>source.ip</c> (headers, JWT
///   claims, <c>request.time</c>, which a long-lived connection would outlive): the ports the rule applies to;</item>
/// <item>an AUDIT AuthorizationPolicy: the ports its rules apply to (it records requests, for suggestions and counts);</item>
/// <item>a kind this code does not know: every port (fail safe).</item>
/// </list>
/// PeerAuthentication never does: L4 mode is for mTLS connections only, and plaintext callers always get HTTP.
/// </summary>
public static class L4Eligibility
{
    public static PortModes Of(bool enabled, IEnumerable<PolicyResource> applying, bool hasCallerRestrictions)
    {
        ArgumentNullException.ThrowIfNull(applying);
        if (!enabled)
        {
            return PortModes.Off;
        }
        string? all = hasCallerRestrictions ? "caller restrictions from anomaly response apply per request" : null;
        var ports = new Dictionary<int, string>();
        foreach (var resource in applying.OrderBy(r => r.Kind, StringComparer.Ordinal).ThenBy(r => r.Metadata.Namespace, StringComparer.Ordinal).ThenBy(r => r.Metadata.Name, StringComparer.Ordinal))
        {
            var name = $"{resource.Kind} '{resource.Metadata.Namespace}/{resource.Metadata.Name}'";
            switch (resource)
            {
                case PeerAuthentication:
                    break;
                case AuthorizationPolicy policy:
                    for (var i = 0; i < policy.Spec.Rules.Length && all is null; i++)
                    {
                        all = Rule(policy.Spec.Rules[i], policy.Spec.Action, $"{name} rule {i}", ports);
                    }
                    break;
                default:
                    all ??= $"{name} applies per request";
                    break;
            }
        }
        return new PortModes(true, all, all is null ? ports : []);
    }

    /// <summary>Adds the ports <paramref name="rule"/> makes L7 to <paramref name="ports"/>; returns a reason when it makes every port L7.</summary>
    private static string? Rule(AuthorizationRule rule, PolicyAction action, string name, Dictionary<int, string> ports)
    {
        // The ports the rule applies to; null: every port.
        int[]? rulePorts = rule.To.IsEmpty || rule.To.Any(o => o.Ports.IsEmpty) ? null : [.. rule.To.SelectMany(o => o.Ports)];
        string? whole = action == PolicyAction.Audit ? "AUDIT records every request"
            : rule.From.Any(f => !f.RequestPrincipals.IsEmpty) ? "requestPrincipals needs the request's JWT"
            : rule.When.FirstOrDefault(c => c.Key != ConditionKeys.SourceIp) is { } condition ? $"'{condition.Key}' is a request attribute"
            : null;
        if (whole is not null)
        {
            return Mark(rulePorts, $"{name}: {whole}", ports);
        }
        foreach (var operation in rule.To)
        {
            var field = !operation.Methods.IsEmpty ? "methods" : !operation.Paths.IsEmpty ? "paths" : null;
            if (field is not null && Mark(operation.Ports.IsEmpty ? null : [.. operation.Ports], $"{name}: '{field}' needs the HTTP request", ports) is { } every)
            {
                return every;
            }
        }
        return null;
    }

    private static string? Mark(int[]? at, string reason, Dictionary<int, string> ports)
    {
        if (at is null)
        {
            return reason;
        }
        foreach (var port in at)
        {
            ports.TryAdd(port, reason);
        }
        return null;
    }
}
