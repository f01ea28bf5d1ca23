using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// How an AuthorizationPolicy rule reads on a connection relayed as bytes (a declared TCP port, or an HTTP port in L4
/// mode), as Istio reads it on TCP traffic. A connection has no method, path, headers or JWT, so a rule's HTTP-only
/// fields — <c>methods</c>, <c>paths</c>, <c>requestPrincipals</c>, and <c>when</c> on <c>request.headers[…]</c> or
/// <c>request.auth.claims[…]</c> — cannot be checked. Whichever way they are read must err towards denying:
/// <list type="bullet">
/// <item>an ALLOW rule with any of them matches no connection (it allows less);</item>
/// <item>a DENY or AUDIT rule is read without them, so it applies to every connection the rest of it matches (it denies
///   and records more). A DENY on <c>paths: ["/admin"]</c> with no <c>ports</c> therefore refuses every TCP connection
///   to the workload: scope it with <c>ports</c> to the HTTP ports.</item>
/// </list>
/// What stays: <c>principals</c>, <c>namespaces</c>, <c>ports</c>, <c>source.ip</c> and <c>request.time</c> (checked when
/// the connection arrives and at each new config).
/// </summary>
public static class ConnectionRules
{
    /// <summary>The rule's HTTP-only fields, as an operator wrote them (<c>paths</c>, <c>when request.headers[x-user]</c>…); empty when none.</summary>
    public static IReadOnlyList<string> HttpOnlyFields(AuthorizationRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        var fields = new List<string>();
        var to = rule.To.IsDefault ? [] : rule.To;
        if (to.Any(o => !o.Methods.IsDefaultOrEmpty))
        {
            fields.Add("methods");
        }
        if (to.Any(o => !o.Paths.IsDefaultOrEmpty))
        {
            fields.Add("paths");
        }
        if (!rule.From.IsDefault && rule.From.Any(s => !s.RequestPrincipals.IsDefaultOrEmpty))
        {
            fields.Add("requestPrincipals");
        }
        foreach (var condition in rule.When.IsDefault ? [] : rule.When)
        {
            if (IsHttpOnly(condition))
            {
                fields.Add($"when {condition.Key}");
            }
        }
        return fields;
    }

    /// <summary>
    /// The rule as it applies to a connection: unchanged when it has no HTTP-only field; null (matches no connection)
    /// for an ALLOW rule with one; for DENY and AUDIT, the rule without them.
    /// </summary>
    public static AuthorizationRule? ForConnection(AuthorizationRule rule, PolicyAction action)
    {
        ArgumentNullException.ThrowIfNull(rule);
        if (HttpOnlyFields(rule).Count == 0)
        {
            return rule;
        }
        if (action == PolicyAction.Allow)
        {
            return null;
        }
        // An operation or source left empty matches anything, as Istio's generator leaves a field it cannot translate.
        return new AuthorizationRule(
            rule.From.IsDefault ? [] : [.. rule.From.Select(s => s with { RequestPrincipals = [] })],
            rule.To.IsDefault ? [] : [.. rule.To.Select(o => o with { Methods = [], Paths = [] })],
            rule.When.IsDefault ? [] : [.. rule.When.Where(c => !IsHttpOnly(c))]);
    }

    /// <summary>One sentence for an operator: what a rule with HTTP-only fields does to connections, by action.</summary>
    public static string Explain(PolicyAction action, IReadOnlyList<string> fields) => action == PolicyAction.Allow
        ? $"{string.Join(", ", fields)} cannot match a TCP connection: this ALLOW rule allows no TCP or L4 connection"
        : $"{string.Join(", ", fields)} ignored for a TCP connection: this {(action == PolicyAction.Deny ? "DENY" : "AUDIT")} rule applies to every TCP or L4 connection the rest of it matches";

    /// <summary>
    /// What an operator should hear when applying <paramref name="policy"/>, as Istio warns at apply: a DENY rule with
    /// HTTP-only fields that is not limited to named ports denies every TCP and L4 connection to the workloads it selects.
    /// </summary>
    public static IEnumerable<string> Warnings(AuthorizationPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        if (policy.Spec.Action != PolicyAction.Deny || policy.Spec.Rules.IsDefault)
        {
            yield break;
        }
        for (var i = 0; i < policy.Spec.Rules.Length; i++)
        {
            var rule = policy.Spec.Rules[i];
            var fields = HttpOnlyFields(rule);
            if (fields.Count > 0 && (rule.To.IsDefaultOrEmpty || rule.To.Any(o => o.Ports.IsDefaultOrEmpty)))
            {
                yield return $"AuthorizationPolicy {policy.Metadata.Namespace}/{policy.Metadata.Name} rule {i}: {string.Join(", ", fields)} cannot be checked on a TCP "
                    + "connection, so this DENY rule denies every connection to the TCP and L4 ports of the workloads it selects; "
                    + "name the HTTP ports in to[].operation.ports to keep it on HTTP";
            }
        }
    }

    private static bool IsHttpOnly(RuleCondition condition) =>
        !ConditionKeys.TryParse(condition.Key, out var kind, out _) || kind is ConditionKind.Header or ConditionKind.Claim;
}
