using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// Turns AuthorizationPolicies into the <see cref="PolicySnapshot"/> of one workload. The policies are validated again
/// here (the sidecar compiles what the control plane pushed and NACKs what it cannot apply), and any error refuses the
/// whole snapshot with every error listed.
/// </summary>
public static class PolicyCompiler
{
    /// <summary>
    /// Compiles the policies that select <paramref name="workload"/> (same namespace, and no selector or
    /// <c>selector.service</c> equal to its service); the others are ignored.
    /// </summary>
    /// <param name="probePaths">The workload's declared kubelet probe paths (exact paths): GET/HEAD to them are allowed
    /// unless a DENY rule matches.</param>
    /// <exception cref="PolicyValidationException">A selected policy or a probe path is invalid.</exception>
    public static PolicySnapshot Compile(string version, WorkloadRef workload, IEnumerable<AuthorizationPolicy> policies, IEnumerable<string>? probePaths = null)
    {
        var selected = policies
            .Where(p => p.AppliesTo(workload))
            .OrderBy(p => p.Metadata.Name, StringComparer.Ordinal)
            .ToList();
        var probes = probePaths?.ToList() ?? [];

        var errors = PolicyValidator.Validate(selected).ToList();
        for (var i = 0; i < probes.Count; i++)
        {
            if (PolicySyntax.ValidatePath(probes[i]) is { } error || probes[i].Contains('*', StringComparison.Ordinal))
            {
                errors.Add(new PolicyError($"probePaths[{i}]", $"'{probes[i]}' is not an exact path"));
            }
        }
        if (errors.Count > 0)
        {
            throw new PolicyValidationException(errors);
        }

        var exact = new Dictionary<string, List<CompiledRule>>(StringComparer.Ordinal);
        var prefix = new Dictionary<string, List<CompiledRule>>(StringComparer.Ordinal);
        var principals = new Dictionary<string, List<CompiledRule>>(StringComparer.Ordinal);
        var general = new List<CompiledRule>();
        var audits = new List<CompiledRule>();
        var connectionRules = new List<CompiledRule>();
        var connectionAudits = new List<CompiledRule>();
        var id = 0;
        var hasAllow = false;
        var auditPolicies = new List<string>();
        foreach (var policy in selected)
        {
            var name = $"{policy.Metadata.Namespace}/{policy.Metadata.Name}";
            hasAllow |= policy.Spec.Action == PolicyAction.Allow;
            var auditSlot = -1;
            if (policy.Spec.Action == PolicyAction.Audit && auditPolicies.Count < AuditOutcome.MaxPolicies)
            {
                auditSlot = auditPolicies.Count;
                auditPolicies.Add(name);
            }
            var rules = policy.Spec.Rules.IsDefault ? [] : policy.Spec.Rules;
            for (var r = 0; r < rules.Length; r++)
            {
                var rule = rules[r];
                var compiled = new CompiledRule(
                    id++,
                    policy.Spec.Action,
                    name,
                    r,
                    [.. (rule.From.IsDefault ? [] : rule.From).Select(s => new SourceMatcher(s))],
                    [.. (rule.To.IsDefault ? [] : rule.To).Select(o => new OperationMatcher(o))],
                    [.. (rule.When.IsDefault ? [] : rule.When).Select(ConditionMatcher.Create)])
                {
                    AuditSlot = auditSlot,
                };
                File(compiled, exact, prefix, principals, general, audits);
                if (ForConnection(compiled, rule, policy.Spec.Action) is { } connection)
                {
                    (connection.Action == PolicyAction.Audit ? connectionAudits : connectionRules).Add(connection);
                }
            }
        }

        return new PolicySnapshot(
            version,
            workload,
            selected.Count,
            id,
            hasAllow,
            Freeze(exact),
            Freeze(prefix),
            Freeze(principals),
            [.. general],
            [.. audits],
            [.. auditPolicies],
            new HashSet<string>(probes, StringComparer.Ordinal),
            [.. connectionRules],
            [.. connectionAudits]);
    }

    /// <summary>
    /// The rule as a connection reads it (<see cref="ConnectionRules"/>): itself without HTTP-only fields; null for an
    /// ALLOW rule with some; otherwise the same rule (same id, policy and index, so it decides in the same order) without them,
    /// its reason saying what was left out.
    /// </summary>
    private static CompiledRule? ForConnection(CompiledRule compiled, AuthorizationRule rule, PolicyAction action)
    {
        var fields = ConnectionRules.HttpOnlyFields(rule);
        if (fields.Count == 0)
        {
            return compiled;
        }
        if (ConnectionRules.ForConnection(rule, action) is not { } stripped)
        {
            return null;
        }
        return new CompiledRule(
            compiled.Id,
            action,
            compiled.Policy,
            compiled.RuleIndex,
            [.. stripped.From.Select(s => new SourceMatcher(s))],
            [.. stripped.To.Select(o => new OperationMatcher(o))],
            [.. stripped.When.Select(ConditionMatcher.Create)],
            $"{string.Join(", ", fields)} ignored for a TCP connection")
        {
            AuditSlot = compiled.AuditSlot,
        };
    }

    private static void File(
        CompiledRule rule,
        Dictionary<string, List<CompiledRule>> exact,
        Dictionary<string, List<CompiledRule>> prefix,
        Dictionary<string, List<CompiledRule>> principals,
        List<CompiledRule> general,
        List<CompiledRule> audits)
    {
        if (rule.Action == PolicyAction.Audit)
        {
            // Every AUDIT rule is checked on every request, once: no index can file it twice and double-count it.
            audits.Add(rule);
            return;
        }
        // Path index: the rule can only match a request whose path is one of its exact paths or under one of its
        // '/'-terminated prefixes (a template's literal start is one), because every operation must match and every operation names such paths only.
        if (rule.To.Length > 0 && rule.To.All(o => o.Patterns.Length > 0 && o.Patterns.All(IsIndexablePath)))
        {
            foreach (var pattern in rule.To.SelectMany(o => o.Patterns).Distinct())
            {
                if (pattern.Kind == PatternKind.Exact)
                {
                    Add(exact, pattern.Text, rule);
                }
                else
                {
                    // A template is filed under its literal start, a prefix that ends with '/'; the rule then checks it whole.
                    Add(prefix, pattern.Kind == PatternKind.Template ? PathTemplate.LiteralPrefix(pattern.Text) : pattern.Text, rule);
                }
            }
            return;
        }
        // Principal index: likewise for callers, when every source names exact SPIFFE IDs only.
        if (rule.From.Length > 0 && rule.From.All(s => s.OnlyExactPrincipals))
        {
            foreach (var principal in rule.From.SelectMany(s => s.ExactPrincipals).Distinct(StringComparer.Ordinal))
            {
                Add(principals, principal, rule);
            }
            return;
        }
        general.Add(rule);
    }

    private static bool IsIndexablePath(StringPattern pattern) =>
        pattern.Kind is PatternKind.Exact or PatternKind.Template || (pattern.Kind == PatternKind.Prefix && pattern.Text.EndsWith('/'));

    private static void Add(Dictionary<string, List<CompiledRule>> index, string key, CompiledRule rule)
    {
        if (!index.TryGetValue(key, out var list))
        {
            index[key] = list = [];
        }
        list.Add(rule);
    }

    private static Dictionary<string, CompiledRule[]> Freeze(Dictionary<string, List<CompiledRule>> index) =>
        index.ToDictionary(e => e.Key, e => e.Value.ToArray(), StringComparer.Ordinal);
}
