using System.Globalization;
using System.Text;
using System.Text.Json;
using ZeroTrustMesh.ControlPlane.Discovery;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.ControlPlane.LeastPrivilege;

/// <summary>What <see cref="PolicySuggester.Suggest"/> wrote, and what it observed but could not turn into a rule.</summary>
internal sealed record PolicySuggestion(string Yaml, int Policies, int Rules, IReadOnlyList<string> Skipped);

/// <summary>
/// Least privilege from traffic (issue 19, section 5): from the API inventory's per-caller evidence, one
/// AuthorizationPolicy per observed workload of a namespace with one rule per caller × method × path template, each
/// annotated with its evidence (a YAML comment above the rule, and the annotation <c>suggest.ztm.dev/rule-N</c>, which
/// survives <c>ztmctl apply</c>). Templates become <c>{*}</c> segments. Only what reached the app is evidence: requests
/// the sidecar refused and 404s of the app are not in the inventory, so they are never suggested.
/// </summary>
internal sealed class PolicySuggester(ApiInventory inventory, TimeProvider time)
{
    public const string EvidenceAnnotation = "suggest.ztm.dev/rule-";

    /// <summary>The workloads (<c>sa.ns</c>) of <paramref name="ns"/> the inventory holds.</summary>
    public IReadOnlyList<string> ServicesIn(string ns) =>
        [.. inventory.Services.Where(s => s.EndsWith("." + ns, StringComparison.Ordinal) && s.IndexOf('.', StringComparison.Ordinal) == s.Length - ns.Length - 1)];

    /// <param name="since">Only callers last seen this recently; null: everything observed.</param>
    /// <param name="action">AUDIT or ALLOW.</param>
    public PolicySuggestion Suggest(string ns, TimeSpan? since, string action)
    {
        var now = time.GetUtcNow();
        var skipped = new List<string>();
        var yaml = new StringBuilder();
        var policies = 0;
        var rules = 0;
        foreach (var service in ServicesIn(ns).Order(StringComparer.Ordinal))
        {
            var view = inventory.Inventory(service);
            if (view is null)
            {
                continue;
            }
            var workload = service[..service.IndexOf('.', StringComparison.Ordinal)];
            var found = new List<(string Caller, string Method, string Path, CallerEvidence Evidence)>();
            foreach (var endpoint in view.Endpoints)
            {
                if (endpoint.CallersCapped)
                {
                    skipped.Add($"{service} {endpoint.Method} {endpoint.Template}: more callers than the inventory keeps per endpoint; {endpoint.UnattributedRequests} request(s) of the others have no rule");
                }
                if (PolicyPath(endpoint.Template) is not { } path)
                {
                    skipped.Add($"{service} {endpoint.Method} {endpoint.Template}: the path has '*', '{{' or '}}' in a literal segment; no template expresses it");
                    continue;
                }
                foreach (var evidence in endpoint.Evidence)
                {
                    if (since is { } window && now - evidence.LastSeen > window)
                    {
                        continue;
                    }
                    if (!evidence.Caller.StartsWith("spiffe://", StringComparison.Ordinal))
                    {
                        skipped.Add($"{service} {endpoint.Method} {endpoint.Template}: caller '{evidence.Caller}' ({evidence.Requests} request(s)) has no SPIFFE ID (a PERMISSIVE port); a principal cannot name it");
                        continue;
                    }
                    found.Add((evidence.Caller, endpoint.Method, path, evidence));
                }
            }
            if (found.Count == 0)
            {
                continue;
            }
            found = [.. found.OrderBy(f => f.Caller, StringComparer.Ordinal).ThenBy(f => f.Path, StringComparer.Ordinal).ThenBy(f => f.Method, StringComparer.Ordinal)];
            Write(yaml, ns, workload, action, found, now, since);
            policies++;
            rules += found.Count;
        }

        // What is suggested must be what apply accepts: a failure here is a bug, never a half-valid file for the operator.
        var check = PolicyYaml.Load("suggestion", yaml.ToString());
        if (policies > 0 && !check.IsValid)
        {
            throw new InvalidOperationException($"the suggestion does not validate: {string.Join("; ", check.Errors)}");
        }
        return new PolicySuggestion(yaml.ToString(), policies, rules, skipped);
    }

    /// <summary>An inventory template (<c>/orders/{order}/lines</c>) as a policy path (<c>/orders/{*}/lines</c>); null when a literal segment cannot be written.</summary>
    internal static string? PolicyPath(string template)
    {
        if (template == "/")
        {
            return "/";
        }
        var segments = template.Split('/');
        for (var i = 1; i < segments.Length; i++)
        {
            var segment = segments[i];
            if (segment.Length >= 2 && segment[0] == '{' && segment[^1] == '}' && segment.AsSpan(1, segment.Length - 2).IndexOfAny('{', '}', '*') < 0)
            {
                segments[i] = "{*}";
            }
            else if (segment.AsSpan().IndexOfAny('{', '}', '*') >= 0 || segment.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c is '?' or '#'))
            {
                return null;
            }
        }
        return string.Join('/', segments);
    }

    private static void Write(StringBuilder yaml, string ns, string workload, string action,
        List<(string Caller, string Method, string Path, CallerEvidence Evidence)> rules, DateTimeOffset now, TimeSpan? since)
    {
        var name = $"suggested-{workload}";
        name = name.Length > 253 ? name[..253].TrimEnd('-', '.') : name;
        var total = rules.Sum(r => r.Evidence.Requests);
        yaml.Append(yaml.Length == 0 ? "" : "---\n")
            .Append(CultureInfo.InvariantCulture, $"# Suggested by 'ztmctl policy suggest' at {Time(now)} from {total} observed request(s) to {workload}.{ns}")
            .Append(since is { } s ? $" (callers seen within {ZeroTrustMesh.Identity.Durations.Format(s)})" : "")
            .Append(".\n# Review it; apply it as AUDIT first ('ztmctl policy audit-report' shows what it would deny), then as ALLOW.\n")
            .Append("apiVersion: security.ztm.dev/v1\nkind: AuthorizationPolicy\nmetadata:\n")
            .Append(CultureInfo.InvariantCulture, $"  name: {name}\n  namespace: {ns}\n  annotations:\n");
        for (var i = 0; i < rules.Count; i++)
        {
            yaml.Append(CultureInfo.InvariantCulture, $"    {EvidenceAnnotation}{i}: {Quote(Evidence(rules[i].Evidence))}\n");
        }
        yaml.Append(CultureInfo.InvariantCulture, $"spec:\n  selector:\n    service: {workload}\n  action: {action}\n  rules:\n");
        for (var i = 0; i < rules.Count; i++)
        {
            var (caller, method, path, evidence) = rules[i];
            yaml.Append(CultureInfo.InvariantCulture, $"    # rule {i}: {Evidence(evidence)}\n")
                .Append(CultureInfo.InvariantCulture, $"    - from:\n        - source:\n            principals: [{Quote(caller)}]\n")
                .Append(CultureInfo.InvariantCulture, $"      to:\n        - operation:\n            methods: [{Quote(method)}]\n            paths: [{Quote(path)}]\n");
        }
    }

    private static string Evidence(CallerEvidence e) =>
        string.Create(CultureInfo.InvariantCulture, $"{e.Requests} request(s), first seen {Time(e.FirstSeen)}, last seen {Time(e.LastSeen)}");

    private static string Time(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);

    /// <summary>A JSON string is a YAML double-quoted scalar: any text, safely escaped.</summary>
    private static string Quote(string value) => JsonSerializer.Serialize(value, LeastPrivilegeJson.Default.String);
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class LeastPrivilegeJson : System.Text.Json.Serialization.JsonSerializerContext;
