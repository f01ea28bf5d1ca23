using System.Collections.Immutable;
using System.Text.Json;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Validation;

/// <summary>
/// Checks a whole document set and returns every error at once (never stops at the first), so an operator fixes a file
/// in one pass and nothing is ever half-applied. Used on apply in the control plane, in ztmctl, and by the sidecar before
/// it compiles a pushed snapshot (a config it cannot apply is NACKed).
/// </summary>
public static class PolicyValidator
{
    /// <summary>Upper bound of authorization rules in one set, so a runaway generator cannot exhaust a sidecar.</summary>
    public const int MaxRules = 10_000;

    /// <summary>Upper bound of entries in any one list (principals, paths, values …) for the same reason.</summary>
    public const int MaxListEntries = 10_000;

    public static ImmutableArray<PolicyError> Validate(IEnumerable<PolicyDocument> documents)
    {
        var errors = new List<PolicyError>();
        var seen = new Dictionary<ResourceKey, PolicyDocument>();
        var rules = 0;
        foreach (var document in documents)
        {
            var sink = new ErrorSink(errors, document.Location);
            ValidateResource(document.Resource, sink);
            if (document.Resource is AuthorizationPolicy policy && !policy.Spec.Rules.IsDefault)
            {
                rules += policy.Spec.Rules.Length;
            }
            if (!string.IsNullOrEmpty(document.Resource.Metadata.Name))
            {
                var key = document.Resource.Key;
                if (seen.TryGetValue(key, out var first))
                {
                    sink.Add("metadata.name", $"duplicate {key}: already defined in {first.Location}");
                }
                else
                {
                    seen.Add(key, document);
                }
            }
        }
        if (rules > MaxRules)
        {
            errors.Add(new PolicyError("", $"the set has {rules} authorization rules; at most {MaxRules} are allowed"));
        }
        return [.. errors];
    }

    /// <summary>Validates resources that did not come from a file (e.g. pushed to a sidecar); locations use the resource key.</summary>
    public static ImmutableArray<PolicyError> Validate(IEnumerable<PolicyResource> resources) =>
        Validate(resources.Select(PolicyDocument.FromResource));

    private static void ValidateResource(PolicyResource resource, ErrorSink sink)
    {
        ValidateMetadata(resource.Metadata, sink);
        switch (resource)
        {
            case AuthorizationPolicy p:
                ValidateSelector(p.Spec.Selector, sink);
                ValidateRules(p.Spec.Rules, sink);
                break;
            case RequestAuthentication r:
                ValidateSelector(r.Spec.Selector, sink);
                ValidateJwtRules(r.Spec.JwtRules, sink);
                break;
            case PeerAuthentication a:
                ValidateSelector(a.Spec.Selector, sink);
                ValidatePortMtls(a.Spec.PortLevelMtls, sink);
                if (Length(a.Spec.PortLevelMtls) > 0 && a.Spec.Selector is null)
                {
                    // As in Istio: a port number means something only for one workload's ports.
                    sink.Add("spec.portLevelMtls", "portLevelMtls needs a selector: ports are those of one workload");
                }
                break;
            case RateLimitPolicy l:
                ValidateSelector(l.Spec.Selector, sink);
                ValidateRateLimit(l.Spec, sink);
                break;
        }
    }

    private static void ValidateMetadata(ResourceMetadata metadata, ErrorSink sink)
    {
        if (string.IsNullOrEmpty(metadata.Name))
        {
            sink.Add("metadata.name", "a name is required");
        }
        else if (!PolicySyntax.IsDnsSubdomain(metadata.Name))
        {
            sink.Add("metadata.name", $"'{metadata.Name}' is not a valid name: use lower-case letters, digits, '-' and '.', at most 253 characters");
        }
        if (!PolicySyntax.IsDnsLabel(metadata.Namespace))
        {
            sink.Add("metadata.namespace", $"'{metadata.Namespace}' is not a valid namespace: use lower-case letters, digits and '-', at most 63 characters");
        }
    }

    private static void ValidateSelector(WorkloadSelector? selector, ErrorSink sink)
    {
        if (selector is not null && !PolicySyntax.IsDnsLabel(selector.Service))
        {
            sink.Add("spec.selector.service", $"'{selector.Service}' is not a service name: use lower-case letters, digits and '-', at most 63 characters");
        }
    }

    private static void ValidateRules(ImmutableArray<AuthorizationRule> rules, ErrorSink sink)
    {
        for (var r = 0; r < Length(rules); r++)
        {
            var rule = rules[r];
            var path = $"spec.rules[{r}]";
            for (var i = 0; i < Length(rule.From); i++)
            {
                ValidateSource(rule.From[i], $"{path}.from[{i}].source", sink);
            }
            for (var i = 0; i < Length(rule.To); i++)
            {
                ValidateOperation(rule.To[i], $"{path}.to[{i}].operation", sink);
            }
            for (var i = 0; i < Length(rule.When); i++)
            {
                ValidateCondition(rule.When[i], $"{path}.when[{i}]", sink);
            }
        }
    }

    private static void ValidateSource(RuleSource source, string path, ErrorSink sink)
    {
        if (Length(source.Principals) + Length(source.Namespaces) + Length(source.RequestPrincipals) == 0)
        {
            sink.Add(path, "a source must name principals, namespaces or requestPrincipals (omit 'from' to match any caller)");
        }
        Each(source.Principals, $"{path}.principals", sink, PolicySyntax.ValidatePrincipal);
        Each(source.Namespaces, $"{path}.namespaces", sink, PolicySyntax.ValidateNamespace);
        Each(source.RequestPrincipals, $"{path}.requestPrincipals", sink, v => PolicySyntax.TryParseRequestPrincipal(v, out _, out _)
            ? null
            : $"'{v}' is not a request principal: use '<issuer>/<subject>', '<issuer>/*' or '*'");
    }

    private static void ValidateOperation(RuleOperation operation, string path, ErrorSink sink)
    {
        if (Length(operation.Methods) + Length(operation.Paths) + Length(operation.Ports) == 0)
        {
            sink.Add(path, "an operation must name methods, paths or ports (omit 'to' to match any request)");
        }
        Each(operation.Methods, $"{path}.methods", sink, PolicySyntax.ValidateMethod);
        Each(operation.Paths, $"{path}.paths", sink, PolicySyntax.ValidatePath);
        CheckPorts(operation.Ports, $"{path}.ports", sink);
    }

    private static void CheckPorts(ImmutableArray<int> ports, string path, ErrorSink sink)
    {
        for (var i = 0; i < Length(ports); i++)
        {
            if (ports[i] is < 1 or > PolicySyntax.MaxPortNumber)
            {
                sink.Add($"{path}[{i}]", $"{ports[i]} is not a port: it must be 1 to {PolicySyntax.MaxPortNumber}");
            }
        }
    }

    private static void ValidateCondition(RuleCondition condition, string path, ErrorSink sink)
    {
        if (string.IsNullOrEmpty(condition.Key))
        {
            sink.Add($"{path}.key", $"a key is required: {ConditionKeys.Supported}");
            return;
        }
        if (!ConditionKeys.TryParse(condition.Key, out var kind, out _))
        {
            sink.Add($"{path}.key", $"'{condition.Key}' is not a supported key: use {ConditionKeys.Supported}");
            return;
        }
        if (Length(condition.Values) + Length(condition.NotValues) == 0)
        {
            sink.Add(path, "a condition needs values or notValues");
        }
        Func<string, string?> check = kind switch
        {
            ConditionKind.SourceIp => v => IpRange.TryParse(v, out _, out var error) ? null : error,
            ConditionKind.Time => v => TimeWindow.TryParse(v, out _)
                ? null
                : $"'{v}' is not a time window: use 'HH:mm-HH:mm' (24-hour, e.g. '09:00-17:00' or '22:00-06:00' across midnight)",
            _ => StringPattern.ValidateValue,
        };
        Each(condition.Values, $"{path}.values", sink, check);
        Each(condition.NotValues, $"{path}.notValues", sink, check);
        if (kind == ConditionKind.Time)
        {
            if (!TimeWindow.TryFindTimeZone(condition.TimeZone, out _))
            {
                sink.Add($"{path}.timeZone", $"'{condition.TimeZone}' is not a known IANA time zone (e.g. 'Europe/Paris', 'UTC')");
            }
            Each(condition.Days, $"{path}.days", sink, d => TimeWindow.TryParseDay(d, out _) ? null : $"'{d}' is not a day: use Mon, Tue, Wed, Thu, Fri, Sat or Sun");
        }
        else
        {
            if (condition.TimeZone is not null)
            {
                sink.Add($"{path}.timeZone", $"timeZone only applies to '{ConditionKeys.RequestTime}'");
            }
            if (Length(condition.Days) > 0)
            {
                sink.Add($"{path}.days", $"days only apply to '{ConditionKeys.RequestTime}'");
            }
        }
    }

    private static void ValidateJwtRules(ImmutableArray<JwtRule> rules, ErrorSink sink)
    {
        if (Length(rules) == 0)
        {
            sink.Add("spec.jwtRules", "at least one JWT rule is required");
        }
        var issuers = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < Length(rules); i++)
        {
            var rule = rules[i];
            var path = $"spec.jwtRules[{i}]";
            if (string.IsNullOrWhiteSpace(rule.Issuer))
            {
                sink.Add($"{path}.issuer", "an issuer is required");
            }
            else if (!issuers.Add(rule.Issuer))
            {
                sink.Add($"{path}.issuer", $"issuer '{rule.Issuer}' appears twice; one rule per issuer");
            }
            Each(rule.Audiences, $"{path}.audiences", sink, a => string.IsNullOrWhiteSpace(a) ? "an audience must not be empty" : null);
            switch (rule.JwksUri, rule.Jwks)
            {
                case (null, null):
                    sink.Add(path, "one of jwksUri or jwks is required");
                    break;
                case (not null, not null):
                    sink.Add(path, "give either jwksUri or jwks, not both");
                    break;
                case (not null, null):
                    if (!Uri.TryCreate(rule.JwksUri, UriKind.Absolute, out var uri)
                        || !(uri.Scheme == Uri.UriSchemeHttps || (uri.Scheme == Uri.UriSchemeHttp && uri.IsLoopback)))
                    {
                        // Keys fetched over plain http could be swapped on the way; loopback is allowed for local setups.
                        sink.Add($"{path}.jwksUri", $"'{rule.JwksUri}' must be an absolute https URL (http only on loopback)");
                    }
                    break;
                case (null, not null):
                    if (CheckJwks(rule.Jwks) is { } error)
                    {
                        sink.Add($"{path}.jwks", error);
                    }
                    break;
            }
        }
    }

    private static string? CheckJwks(string jwks)
    {
        try
        {
            using var document = JsonDocument.Parse(jwks);
            return document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("keys", out var keys)
                && keys.ValueKind == JsonValueKind.Array
                && keys.GetArrayLength() > 0
                ? null
                : "the inline JWKS must be a JSON object with a non-empty \"keys\" array";
        }
        catch (JsonException e)
        {
            return $"the inline JWKS is not valid JSON: {e.Message}";
        }
    }

    private static void ValidatePortMtls(ImmutableArray<PortMtls> ports, ErrorSink sink)
    {
        var seen = new HashSet<int>();
        for (var i = 0; i < Length(ports); i++)
        {
            var port = ports[i].Port;
            if (port is < 1 or > PolicySyntax.MaxPortNumber)
            {
                sink.Add($"spec.portLevelMtls[{i}].port", $"{port} is not a port: it must be 1 to {PolicySyntax.MaxPortNumber}");
            }
            else if (!seen.Add(port))
            {
                sink.Add($"spec.portLevelMtls[{i}].port", $"port {port} appears twice");
            }
        }
    }

    private static void ValidateRateLimit(RateLimitPolicySpec spec, ErrorSink sink)
    {
        if (spec.PerCaller is null && Length(spec.Routes) == 0 && Length(spec.Overrides) == 0)
        {
            sink.Add("spec", "a rate limit needs perCaller, routes or overrides");
        }
        if (spec.PerCaller is not null)
        {
            ValidateBucket(spec.PerCaller, "spec.perCaller", sink);
        }
        for (var i = 0; i < Length(spec.Routes); i++)
        {
            var route = spec.Routes[i];
            var path = $"spec.routes[{i}]";
            if (PolicySyntax.ValidatePath(route.Path) is { } error)
            {
                sink.Add($"{path}.path", error);
            }
            Each(route.Methods, $"{path}.methods", sink, PolicySyntax.ValidateMethod);
            ValidateBucket(route.Limit, $"{path}.limit", sink);
        }
        var principals = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < Length(spec.Overrides); i++)
        {
            var entry = spec.Overrides[i];
            var path = $"spec.overrides[{i}]";
            if (!SpiffeId.TryParse(entry.Principal, out _, out var error))
            {
                sink.Add($"{path}.principal", $"'{entry.Principal}' is not a SPIFFE ID: {error}");
            }
            else if (!principals.Add(entry.Principal))
            {
                sink.Add($"{path}.principal", $"'{entry.Principal}' has two overrides");
            }
            ValidateBucket(entry.Limit, $"{path}.limit", sink);
        }
    }

    private static void ValidateBucket(TokenBucket bucket, string path, ErrorSink sink)
    {
        if (bucket.RequestsPerUnit < 1)
        {
            sink.Add($"{path}.requestsPerUnit", $"{bucket.RequestsPerUnit} must be at least 1");
        }
        if (bucket.Burst < 0)
        {
            sink.Add($"{path}.burst", $"{bucket.Burst} must not be negative (0 means the same as requestsPerUnit)");
        }
    }

    private static void Each(ImmutableArray<string> values, string path, ErrorSink sink, Func<string, string?> check)
    {
        var count = Length(values);
        if (count > MaxListEntries)
        {
            sink.Add(path, $"{count} entries; at most {MaxListEntries} are allowed");
            return;
        }
        for (var i = 0; i < count; i++)
        {
            if (check(values[i]) is { } error)
            {
                sink.Add($"{path}[{i}]", error);
            }
        }
    }

    private static int Length<T>(ImmutableArray<T> array) => array.IsDefault ? 0 : array.Length;
}
