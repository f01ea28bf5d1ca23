using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// <c>kind: AuthorizationPolicy</c>: reader, validator and wire form. Its compiler is the authorization engine
/// (<see cref="Authorization.PolicyCompiler"/> → <see cref="Authorization.PolicySnapshot"/>), which the sidecar's
/// authorization stage and <c>ztmctl policy test</c> share.
/// </summary>
public sealed class AuthorizationPolicyKind : PolicyKind<AuthorizationPolicy>
{
    public static readonly AuthorizationPolicyKind Instance = new();

    private AuthorizationPolicyKind()
    {
    }

    /// <summary>Upper bound of authorization rules in one set, so a runaway generator cannot exhaust a sidecar.</summary>
    public const int MaxRules = 10_000;

    // Stand-ins for parts whose shape was wrong: that error is already reported, and these pass validation so it
    // is not followed by a confusing second error about the same place. The set is refused anyway.
    private static readonly RuleSource PlaceholderSource = new(["*"], [], []);
    private static readonly RuleOperation PlaceholderOperation = new(["*"], [], []);
    private static readonly RuleCondition PlaceholderCondition = new("source.ip", ["::/0"], []);

    public override string Name => AuthorizationPolicy.KindName;

    protected override AuthorizationPolicy ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader)
    {
        if (spec is null)
        {
            return new AuthorizationPolicy(metadata, new AuthorizationPolicySpec(null, PolicyAction.Allow, []));
        }
        reader.Keys(spec, "spec", "selector", "action", "rules");
        var action = reader.Text(spec, "action", "spec") switch
        {
            null or "ALLOW" => PolicyAction.Allow,
            "DENY" => PolicyAction.Deny,
            "AUDIT" => PolicyAction.Audit,
            var other => Invalid(other),
        };
        var rules = reader.List(spec, "rules", "spec", (node, path) =>
        {
            if (reader.Mapping(node, path) is not { } rule)
            {
                return AuthorizationRule.MatchAll;
            }
            reader.Keys(rule, path, "from", "to", "when");
            return new AuthorizationRule(
                reader.List(rule, "from", path, (n, p) => ReadSource(reader, Wrapped(reader, n, p, "source"), $"{p}.source")),
                reader.List(rule, "to", path, (n, p) => ReadOperation(reader, Wrapped(reader, n, p, "operation"), $"{p}.operation")),
                reader.List(rule, "when", path, (n, p) => ReadCondition(reader, n, p)));
        });
        return new AuthorizationPolicy(metadata, new AuthorizationPolicySpec(reader.Selector(spec), action, rules));

        PolicyAction Invalid(string value)
        {
            reader.Errors.Add("spec.action", $"'{value}' is not an action: use ALLOW, DENY or AUDIT");
            return PolicyAction.Allow;
        }
    }

    /// <summary><c>from[i]</c> is <c>{source: {...}}</c> and <c>to[i]</c> is <c>{operation: {...}}</c>, as in Istio.</summary>
    private static JsonObject? Wrapped(SpecReader reader, JsonNode? node, string path, string key)
    {
        if (reader.Mapping(node, path) is not { } map)
        {
            return null;
        }
        reader.Keys(map, path, key);
        return reader.Mapping(SpecReader.Child(map, key), $"{path}.{key}", required: true);
    }

    private static RuleSource ReadSource(SpecReader reader, JsonObject? map, string path)
    {
        if (map is null)
        {
            return PlaceholderSource; // the shape error is reported; do not add "a source must name …" on top
        }
        reader.Keys(map, path, "principals", "namespaces", "requestPrincipals");
        return new RuleSource(reader.Strings(map, "principals", path), reader.Strings(map, "namespaces", path), reader.Strings(map, "requestPrincipals", path));
    }

    private static RuleOperation ReadOperation(SpecReader reader, JsonObject? map, string path)
    {
        if (map is null)
        {
            return PlaceholderOperation;
        }
        reader.Keys(map, path, "methods", "paths", "ports");
        return new RuleOperation(reader.Strings(map, "methods", path), reader.Strings(map, "paths", path),
            reader.List(map, "ports", path, (n, p) => reader.Number(n, p) ?? 0));
    }

    /// <summary>One <c>when</c> condition; shared with ApiSpec's object rules (<c>unless</c>).</summary>
    internal static RuleCondition ReadCondition(SpecReader reader, JsonNode? node, string path)
    {
        if (reader.Mapping(node, path) is not { } map)
        {
            return PlaceholderCondition;
        }
        reader.Keys(map, path, "key", "values", "notValues", "timeZone", "days");
        var key = reader.Text(map, "key", path) ?? (SpecReader.Child(map, "key") is not null ? PlaceholderCondition.Key : "");
        return new RuleCondition(key, reader.Strings(map, "values", path), reader.Strings(map, "notValues", path))
        {
            TimeZone = reader.Text(map, "timeZone", path),
            Days = reader.Strings(map, "days", path),
        };
    }

    protected override void WriteSpec(AuthorizationPolicy resource, Utf8JsonWriter json)
    {
        ResourceWriter.Selector(json, resource.Spec.Selector);
        json.WriteString("action", resource.Spec.Action switch { PolicyAction.Allow => "ALLOW", PolicyAction.Deny => "DENY", _ => "AUDIT" });
        ResourceWriter.Objects(json, "rules", resource.Spec.Rules, static (json, rule) =>
        {
            ResourceWriter.Objects(json, "from", rule.From, static (json, source) =>
            {
                json.WriteStartObject("source");
                ResourceWriter.Strings(json, "principals", source.Principals);
                ResourceWriter.Strings(json, "namespaces", source.Namespaces);
                ResourceWriter.Strings(json, "requestPrincipals", source.RequestPrincipals);
                json.WriteEndObject();
            });
            ResourceWriter.Objects(json, "to", rule.To, static (json, operation) =>
            {
                json.WriteStartObject("operation");
                ResourceWriter.Strings(json, "methods", operation.Methods);
                ResourceWriter.Strings(json, "paths", operation.Paths);
                if (!operation.Ports.IsDefaultOrEmpty)
                {
                    json.WriteStartArray("ports");
                    foreach (var port in operation.Ports)
                    {
                        json.WriteNumberValue(port);
                    }
                    json.WriteEndArray();
                }
                json.WriteEndObject();
            });
            ResourceWriter.Objects(json, "when", rule.When, WriteCondition);
        });
    }

    internal static void WriteCondition(Utf8JsonWriter json, RuleCondition condition)
    {
        json.WriteString("key", condition.Key);
        ResourceWriter.Strings(json, "values", condition.Values);
        ResourceWriter.Strings(json, "notValues", condition.NotValues);
        ResourceWriter.Optional(json, "timeZone", condition.TimeZone);
        ResourceWriter.Strings(json, "days", condition.Days);
    }

    protected override void Validate(AuthorizationPolicy resource, ErrorSink errors)
    {
        var rules = resource.Spec.Rules;
        for (var r = 0; r < Checks.Length(rules); r++)
        {
            var rule = rules[r];
            var path = $"spec.rules[{r}]";
            for (var i = 0; i < Checks.Length(rule.From); i++)
            {
                ValidateSource(rule.From[i], $"{path}.from[{i}].source", errors);
            }
            for (var i = 0; i < Checks.Length(rule.To); i++)
            {
                ValidateOperation(rule.To[i], $"{path}.to[{i}].operation", errors);
            }
            for (var i = 0; i < Checks.Length(rule.When); i++)
            {
                ValidateCondition(rule.When[i], $"{path}.when[{i}]", errors);
            }
        }
    }

    public override void ValidateSet(IReadOnlyList<PolicyDocument> documents, List<PolicyError> errors)
    {
        var rules = documents.Sum(d => Checks.Length(((AuthorizationPolicy)d.Resource).Spec.Rules));
        if (rules > MaxRules)
        {
            errors.Add(new PolicyError("", $"the set has {rules} authorization rules; at most {MaxRules} are allowed"));
        }
    }

    private static void ValidateSource(RuleSource source, string path, ErrorSink errors)
    {
        if (Checks.Length(source.Principals) + Checks.Length(source.Namespaces) + Checks.Length(source.RequestPrincipals) == 0)
        {
            errors.Add(path, "a source must name principals, namespaces or requestPrincipals (omit 'from' to match any caller)");
        }
        Checks.Each(source.Principals, $"{path}.principals", errors, PolicySyntax.ValidatePrincipal);
        Checks.Each(source.Namespaces, $"{path}.namespaces", errors, PolicySyntax.ValidateNamespace);
        Checks.Each(source.RequestPrincipals, $"{path}.requestPrincipals", errors, v => PolicySyntax.TryParseRequestPrincipal(v, out _, out _)
            ? null
            : $"'{v}' is not a request principal: use '<issuer>/<subject>', '<issuer>/*' or '*'");
    }

    private static void ValidateOperation(RuleOperation operation, string path, ErrorSink errors)
    {
        if (Checks.Length(operation.Methods) + Checks.Length(operation.Paths) + Checks.Length(operation.Ports) == 0)
        {
            errors.Add(path, "an operation must name methods, paths or ports (omit 'to' to match any request)");
        }
        Checks.Each(operation.Methods, $"{path}.methods", errors, PolicySyntax.ValidateMethod);
        Checks.Each(operation.Paths, $"{path}.paths", errors, PolicySyntax.ValidatePath);
        Checks.Ports(operation.Ports, $"{path}.ports", errors);
    }

    internal static void ValidateCondition(RuleCondition condition, string path, ErrorSink errors)
    {
        if (string.IsNullOrEmpty(condition.Key))
        {
            errors.Add($"{path}.key", $"a key is required: {ConditionKeys.Supported}");
            return;
        }
        if (!ConditionKeys.TryParse(condition.Key, out var kind, out _))
        {
            errors.Add($"{path}.key", $"'{condition.Key}' is not a supported key: use {ConditionKeys.Supported}");
            return;
        }
        if (Checks.Length(condition.Values) + Checks.Length(condition.NotValues) == 0)
        {
            errors.Add(path, "a condition needs values or notValues");
        }
        Func<string, string?> check = kind switch
        {
            ConditionKind.SourceIp => v => IpRange.TryParse(v, out _, out var error) ? null : error,
            ConditionKind.Time => v => TimeWindow.TryParse(v, out _)
                ? null
                : $"'{v}' is not a time window: use 'HH:mm-HH:mm' (24-hour, e.g. '09:00-17:00' or '22:00-06:00' across midnight)",
            _ => StringPattern.ValidateValue,
        };
        Checks.Each(condition.Values, $"{path}.values", errors, check);
        Checks.Each(condition.NotValues, $"{path}.notValues", errors, check);
        if (kind == ConditionKind.Time)
        {
            if (!TimeWindow.TryFindTimeZone(condition.TimeZone, out _))
            {
                errors.Add($"{path}.timeZone", $"'{condition.TimeZone}' is not a known IANA time zone (e.g. 'Europe/Paris', 'UTC')");
            }
            Checks.Each(condition.Days, $"{path}.days", errors, d => TimeWindow.TryParseDay(d, out _) ? null : $"'{d}' is not a day: use Mon, Tue, Wed, Thu, Fri, Sat or Sun");
        }
        else
        {
            if (condition.TimeZone is not null)
            {
                errors.Add($"{path}.timeZone", $"timeZone only applies to '{ConditionKeys.RequestTime}'");
            }
            if (Checks.Length(condition.Days) > 0)
            {
                errors.Add($"{path}.days", $"days only apply to '{ConditionKeys.RequestTime}'");
            }
        }
    }
}

/// <summary>The wire form of an AuthorizationPolicy (its model as JSON), generated at build time so NativeAOT needs no reflection.</summary>
