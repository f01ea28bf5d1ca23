using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Yaml;

/// <summary>
/// Reads policy YAML (one or more documents per file, separated by <c>---</c>) into the model. Only the control plane
/// and ztmctl call this; the sidecar receives already-validated resources over gRPC. It walks YamlDotNet's
/// representation model (<see cref="YamlStream"/>) by hand rather than using the reflection-based deserializer, which
/// keeps the assembly NativeAOT-clean and lets every unknown field and wrong type be reported with its path.
/// </summary>
public static class PolicyYaml
{
    /// <summary>Largest file accepted (UTF-8 bytes); policy sets are small, and a huge file is a mistake or an attack.</summary>
    public const int MaxFileBytes = 1024 * 1024;

    /// <summary>
    /// Reads one file and validates everything in it; see <see cref="Load(IEnumerable{KeyValuePair{string, string}})"/>.
    /// </summary>
    public static PolicySetResult Load(string source, string yaml) => Load([new(source, yaml)]);

    /// <summary>
    /// Reads every file (source name → YAML text), then validates the documents as one set: structure, values,
    /// duplicates across files and the size limits. Every error is returned; the set is usable only if there is none.
    /// </summary>
    public static PolicySetResult Load(IEnumerable<KeyValuePair<string, string>> files)
    {
        var documents = ImmutableArray.CreateBuilder<PolicyDocument>();
        var errors = ImmutableArray.CreateBuilder<PolicyError>();
        foreach (var (source, yaml) in files)
        {
            var read = Read(source, yaml);
            documents.AddRange(read.Documents);
            errors.AddRange(read.Errors);
        }
        errors.AddRange(PolicyValidator.Validate(documents));
        return new PolicySetResult(documents.ToImmutable(), errors.ToImmutable());
    }

    /// <summary>
    /// Reads one file into resources, reporting syntax, structure, unknown kinds and fields and wrong types; the values
    /// themselves are checked by <see cref="PolicyValidator"/>. A document with errors is still returned when its kind is
    /// known, so that validation can report its other problems too.
    /// </summary>
    public static PolicySetResult Read(string source, string yaml)
    {
        var errors = new List<PolicyError>();
        var documents = ImmutableArray.CreateBuilder<PolicyDocument>();
        var bytes = Encoding.UTF8.GetByteCount(yaml);
        if (bytes > MaxFileBytes)
        {
            errors.Add(new PolicyError(source, $"the file is {bytes:N0} bytes; at most {MaxFileBytes:N0} bytes (1 MiB) are accepted"));
            return new PolicySetResult([], [.. errors]);
        }

        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException e)
        {
            var message = e.InnerException is { } inner && e.Message.StartsWith("(Line", StringComparison.Ordinal) ? inner.Message : e.Message;
            errors.Add(new PolicyError($"{source} line {e.Start.Line}, column {e.Start.Column}", $"invalid YAML: {Trim(message)}"));
            return new PolicySetResult([], [.. errors]);
        }
        catch (ArgumentException e)
        {
            // The representation model refuses a mapping with the same key twice.
            errors.Add(new PolicyError(source, $"invalid YAML: {e.Message}"));
            return new PolicySetResult([], [.. errors]);
        }

        for (var i = 0; i < stream.Documents.Count; i++)
        {
            var root = stream.Documents[i].RootNode;
            if (root is YamlScalarNode { Value: null or "" })
            {
                continue; // an empty document, e.g. after a trailing '---'
            }
            var reader = new DocumentReader(new ErrorSink(errors, $"{source}#{i + 1}"));
            if (reader.ReadResource(root) is { } resource)
            {
                documents.Add(new PolicyDocument(source, i + 1, resource));
            }
        }
        return new PolicySetResult(documents.ToImmutable(), [.. errors]);
    }

    private static string Trim(string message) => message.TrimEnd('.');

    /// <summary>Reads one document; every helper reports a wrong type or an unknown key and carries on.</summary>
    private sealed class DocumentReader(ErrorSink errors)
    {
        // Stand-ins for parts whose shape was wrong: that error is already reported, and these pass validation so it
        // is not followed by a confusing second error about the same place. The set is refused anyway.
        private static readonly RuleSource PlaceholderSource = new(["*"], [], []);
        private static readonly RuleOperation PlaceholderOperation = new(["*"], [], []);
        private static readonly RuleCondition PlaceholderCondition = new("source.ip", ["::/0"], []);

        private static readonly string[] Kinds =
            [AuthorizationPolicy.KindName, RequestAuthentication.KindName, PeerAuthentication.KindName, RateLimitPolicy.KindName];

        public PolicyResource? ReadResource(YamlNode root)
        {
            if (Mapping(root, "") is not { } map)
            {
                return null;
            }
            Keys(map, "", "apiVersion", "kind", "metadata", "spec");
            var apiVersion = String(map, "apiVersion", "");
            if (apiVersion is null)
            {
                errors.Add("apiVersion", $"apiVersion is required: '{PolicyResource.ApiVersion}'");
            }
            else if (apiVersion != PolicyResource.ApiVersion)
            {
                errors.Add("apiVersion", $"unknown apiVersion '{apiVersion}'; expected '{PolicyResource.ApiVersion}'");
            }
            var kind = String(map, "kind", "");
            if (kind is null || Array.IndexOf(Kinds, kind) < 0)
            {
                errors.Add("kind", kind is null
                    ? $"kind is required: one of {string.Join(", ", Kinds)}"
                    : $"unknown kind '{kind}'; expected one of {string.Join(", ", Kinds)}");
                return null;
            }

            var metadata = ReadMetadata(Child(map, "metadata"));
            var spec = Mapping(Child(map, "spec"), "spec", required: kind != PeerAuthentication.KindName);
            return kind switch
            {
                AuthorizationPolicy.KindName => new AuthorizationPolicy(metadata, ReadAuthorizationSpec(spec)),
                RequestAuthentication.KindName => new RequestAuthentication(metadata, ReadRequestAuthenticationSpec(spec)),
                PeerAuthentication.KindName => new PeerAuthentication(metadata, ReadPeerAuthenticationSpec(spec)),
                _ => new RateLimitPolicy(metadata, ReadRateLimitSpec(spec)),
            };
        }

        private ResourceMetadata ReadMetadata(YamlNode? node)
        {
            if (Mapping(node, "metadata", required: true) is not { } map)
            {
                return new ResourceMetadata("", ResourceMetadata.DefaultNamespace);
            }
            Keys(map, "metadata", "name", "namespace", "labels", "annotations");
            return new ResourceMetadata(String(map, "name", "metadata") ?? "", String(map, "namespace", "metadata") ?? ResourceMetadata.DefaultNamespace)
            {
                Labels = StringMap(map, "labels", "metadata"),
                Annotations = StringMap(map, "annotations", "metadata"),
            };
        }

        private WorkloadSelector? ReadSelector(YamlMappingNode spec)
        {
            if (Mapping(Child(spec, "selector"), "spec.selector") is not { } map)
            {
                return null;
            }
            Keys(map, "spec.selector", "service");
            var service = String(map, "service", "spec.selector");
            if (service is null)
            {
                errors.Add("spec.selector.service", "a selector needs 'service' (omit the selector to apply to every workload of the namespace)");
            }
            return new WorkloadSelector(service ?? "");
        }

        private AuthorizationPolicySpec ReadAuthorizationSpec(YamlMappingNode? spec)
        {
            if (spec is null)
            {
                return new AuthorizationPolicySpec(null, PolicyAction.Allow, []);
            }
            Keys(spec, "spec", "selector", "action", "rules");
            var action = String(spec, "action", "spec") switch
            {
                null or "ALLOW" => PolicyAction.Allow,
                "DENY" => PolicyAction.Deny,
                "AUDIT" => PolicyAction.Audit,
                var other => Invalid(other),
            };
            var rules = List(spec, "rules", "spec", (node, path) =>
            {
                if (Mapping(node, path) is not { } rule)
                {
                    return AuthorizationRule.MatchAll;
                }
                Keys(rule, path, "from", "to", "when");
                return new AuthorizationRule(
                    List(rule, "from", path, (n, p) => ReadSource(Wrapped(n, p, "source"), $"{p}.source")),
                    List(rule, "to", path, (n, p) => ReadOperation(Wrapped(n, p, "operation"), $"{p}.operation")),
                    List(rule, "when", path, ReadCondition));
            });
            return new AuthorizationPolicySpec(ReadSelector(spec), action, rules);

            PolicyAction Invalid(string value)
            {
                errors.Add("spec.action", $"'{value}' is not an action: use ALLOW, DENY or AUDIT");
                return PolicyAction.Allow;
            }
        }

        /// <summary><c>from[i]</c> is <c>{source: {...}}</c> and <c>to[i]</c> is <c>{operation: {...}}</c>, as in Istio.</summary>
        private YamlMappingNode? Wrapped(YamlNode node, string path, string key)
        {
            if (Mapping(node, path) is not { } map)
            {
                return null;
            }
            Keys(map, path, key);
            return Mapping(Child(map, key), $"{path}.{key}", required: true);
        }

        private RuleSource ReadSource(YamlMappingNode? map, string path)
        {
            if (map is null)
            {
                return PlaceholderSource; // the shape error is reported; do not add "a source must name …" on top
            }
            Keys(map, path, "principals", "namespaces", "requestPrincipals");
            return new RuleSource(Strings(map, "principals", path), Strings(map, "namespaces", path), Strings(map, "requestPrincipals", path));
        }

        private RuleOperation ReadOperation(YamlMappingNode? map, string path)
        {
            if (map is null)
            {
                return PlaceholderOperation;
            }
            Keys(map, path, "methods", "paths", "ports");
            return new RuleOperation(Strings(map, "methods", path), Strings(map, "paths", path), List(map, "ports", path, (n, p) => Int(n, p) ?? 0));
        }

        private RuleCondition ReadCondition(YamlNode node, string path)
        {
            if (Mapping(node, path) is not { } map)
            {
                return PlaceholderCondition;
            }
            Keys(map, path, "key", "values", "notValues", "timeZone", "days");
            var key = String(map, "key", path) ?? (Child(map, "key") is { } k && !IsNull(k) ? PlaceholderCondition.Key : "");
            return new RuleCondition(key, Strings(map, "values", path), Strings(map, "notValues", path))
            {
                TimeZone = String(map, "timeZone", path),
                Days = Strings(map, "days", path),
            };
        }

        private RequestAuthenticationSpec ReadRequestAuthenticationSpec(YamlMappingNode? spec)
        {
            if (spec is null)
            {
                return new RequestAuthenticationSpec(null, []);
            }
            Keys(spec, "spec", "selector", "jwtRules");
            var rules = List(spec, "jwtRules", "spec", (node, path) =>
            {
                if (Mapping(node, path) is not { } map)
                {
                    return new JwtRule("", [], null, null);
                }
                Keys(map, path, "issuer", "audiences", "jwksUri", "jwks", "forwardOriginalToken");
                return new JwtRule(String(map, "issuer", path) ?? "", Strings(map, "audiences", path), String(map, "jwksUri", path), String(map, "jwks", path))
                {
                    ForwardOriginalToken = Bool(map, "forwardOriginalToken", path) ?? false,
                };
            });
            return new RequestAuthenticationSpec(ReadSelector(spec), rules);
        }

        private PeerAuthenticationSpec ReadPeerAuthenticationSpec(YamlMappingNode? spec)
        {
            if (spec is null)
            {
                return new PeerAuthenticationSpec(null, MtlsMode.Strict, []);
            }
            Keys(spec, "spec", "selector", "mode", "portLevelMtls");
            var ports = List(spec, "portLevelMtls", "spec", (node, path) =>
            {
                if (Mapping(node, path) is not { } map)
                {
                    return new PortMtls(0, MtlsMode.Strict);
                }
                Keys(map, path, "port", "mode");
                var port = Int(Child(map, "port"), $"{path}.port");
                if (port is null && Child(map, "port") is null)
                {
                    errors.Add($"{path}.port", "a port is required");
                }
                return new PortMtls(port ?? 0, Mode(map, path, required: true));
            });
            return new PeerAuthenticationSpec(ReadSelector(spec), Mode(spec, "spec", required: false), ports);
        }

        private MtlsMode Mode(YamlMappingNode map, string path, bool required)
        {
            switch (String(map, "mode", path))
            {
                case "STRICT":
                    return MtlsMode.Strict;
                case "PERMISSIVE":
                    return MtlsMode.Permissive;
                case null:
                    if (required)
                    {
                        errors.Add($"{path}.mode", "a mode is required: STRICT or PERMISSIVE");
                    }
                    return MtlsMode.Strict; // zero trust: mTLS unless told otherwise
                case var other:
                    errors.Add($"{path}.mode", $"'{other}' is not a mode: use STRICT or PERMISSIVE");
                    return MtlsMode.Strict;
            }
        }

        private RateLimitPolicySpec ReadRateLimitSpec(YamlMappingNode? spec)
        {
            if (spec is null)
            {
                return new RateLimitPolicySpec(null, null, [], []);
            }
            Keys(spec, "spec", "selector", "perCaller", "routes", "overrides");
            var perCaller = Bucket(Child(spec, "perCaller"), "spec.perCaller", required: false);
            var routes = List(spec, "routes", "spec", (node, path) =>
            {
                if (Mapping(node, path) is not { } map)
                {
                    return new RouteRateLimit("*", [], new TokenBucket(1, RateUnit.Second, 0));
                }
                Keys(map, path, "path", "methods", "limit");
                var routePath = String(map, "path", path);
                if (routePath is null)
                {
                    errors.Add($"{path}.path", "a path is required ('*' for every path)");
                }
                return new RouteRateLimit(routePath ?? "*", Strings(map, "methods", path),
                    Bucket(Child(map, "limit"), $"{path}.limit", required: true) ?? new TokenBucket(1, RateUnit.Second, 0));
            });
            var overrides = List(spec, "overrides", "spec", (node, path) =>
            {
                if (Mapping(node, path) is not { } map)
                {
                    return new PrincipalRateLimit("", new TokenBucket(1, RateUnit.Second, 0));
                }
                Keys(map, path, "principal", "limit");
                return new PrincipalRateLimit(String(map, "principal", path) ?? "",
                    Bucket(Child(map, "limit"), $"{path}.limit", required: true) ?? new TokenBucket(1, RateUnit.Second, 0));
            });
            return new RateLimitPolicySpec(ReadSelector(spec), perCaller, routes, overrides);
        }

        private TokenBucket? Bucket(YamlNode? node, string path, bool required)
        {
            if (Mapping(node, path, required) is not { } map)
            {
                return null;
            }
            Keys(map, path, "requestsPerUnit", "unit", "burst");
            var rate = Int(Child(map, "requestsPerUnit"), $"{path}.requestsPerUnit");
            if (rate is null && Child(map, "requestsPerUnit") is null)
            {
                errors.Add($"{path}.requestsPerUnit", "requestsPerUnit is required");
            }
            var unit = String(map, "unit", path) switch
            {
                null or "second" => RateUnit.Second,
                "minute" => RateUnit.Minute,
                "hour" => RateUnit.Hour,
                var other => InvalidUnit(other),
            };
            return new TokenBucket(rate ?? 1, unit, Int(Child(map, "burst"), $"{path}.burst") ?? 0);

            RateUnit InvalidUnit(string value)
            {
                errors.Add($"{path}.unit", $"'{value}' is not a unit: use second, minute or hour");
                return RateUnit.Second;
            }
        }

        // ---- node helpers: each reports a wrong shape at its path and returns a neutral value ----

        private static YamlNode? Child(YamlMappingNode map, string key) =>
            map.Children.TryGetValue(new YamlScalarNode(key), out var value) ? value : null;

        private static string Join(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

        private static bool IsNull(YamlNode node) =>
            node is YamlScalarNode { Style: ScalarStyle.Plain or ScalarStyle.Any, Value: null or "" or "~" or "null" };

        private bool NoAnchor(YamlNode node, string path)
        {
            // Anchors and aliases let a small file expand into a huge one ("billion laughs"); policy files do not need them.
            if (!node.Anchor.IsEmpty)
            {
                errors.Add(path, "YAML anchors and aliases are not supported in policy files");
                return false;
            }
            return true;
        }

        private YamlMappingNode? Mapping(YamlNode? node, string path, bool required = false)
        {
            if (node is null || IsNull(node))
            {
                if (required)
                {
                    errors.Add(path, $"'{(path.Length == 0 ? "document" : path)}' is required");
                }
                return null;
            }
            if (!NoAnchor(node, path))
            {
                return null;
            }
            if (node is YamlMappingNode map)
            {
                return map;
            }
            errors.Add(path, path.Length == 0 ? "a document must be a mapping with apiVersion, kind, metadata and spec" : "expected a mapping (key: value)");
            return null;
        }

        private void Keys(YamlMappingNode map, string path, params string[] allowed)
        {
            foreach (var key in map.Children.Keys)
            {
                var name = (key as YamlScalarNode)?.Value ?? key.ToString();
                if (Array.IndexOf(allowed, name) < 0)
                {
                    var hint = allowed.FirstOrDefault(a => string.Equals(a, name, StringComparison.OrdinalIgnoreCase));
                    errors.Add(Join(path, name), hint is not null
                        ? $"unknown field '{name}'; did you mean '{hint}'?"
                        : $"unknown field '{name}'; expected {string.Join(", ", allowed)}");
                }
            }
        }

        private string? String(YamlMappingNode map, string key, string path) => Scalar(Child(map, key), Join(path, key));

        private string? Scalar(YamlNode? node, string path)
        {
            if (node is null || IsNull(node) || !NoAnchor(node, path))
            {
                return null;
            }
            if (node is YamlScalarNode scalar)
            {
                return scalar.Value;
            }
            errors.Add(path, "expected a single value, not a list or mapping");
            return null;
        }

        private bool? Bool(YamlMappingNode map, string key, string path)
        {
            var text = String(map, key, path);
            switch (text)
            {
                case null:
                    return null;
                case "true":
                    return true;
                case "false":
                    return false;
                default:
                    errors.Add(Join(path, key), $"'{text}' is not a boolean: use true or false");
                    return null;
            }
        }

        private int? Int(YamlNode? node, string path)
        {
            var text = Scalar(node, path);
            if (text is null)
            {
                return null;
            }
            if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
            {
                return value;
            }
            errors.Add(path, $"'{text}' is not a whole number");
            return null;
        }

        private ImmutableArray<string> Strings(YamlMappingNode map, string key, string path) =>
            List(map, key, path, (node, p) => Scalar(node, p) ?? "");

        private ImmutableArray<T> List<T>(YamlMappingNode map, string key, string path, Func<YamlNode, string, T> read)
        {
            var node = Child(map, key);
            path = Join(path, key);
            if (node is null || IsNull(node) || !NoAnchor(node, path))
            {
                return [];
            }
            if (node is not YamlSequenceNode sequence)
            {
                errors.Add(path, "expected a list");
                return [];
            }
            var items = ImmutableArray.CreateBuilder<T>(sequence.Children.Count);
            for (var i = 0; i < sequence.Children.Count; i++)
            {
                items.Add(read(sequence.Children[i], $"{path}[{i}]"));
            }
            return items.MoveToImmutable();
        }

        private ImmutableDictionary<string, string> StringMap(YamlMappingNode map, string key, string path)
        {
            path = Join(path, key);
            if (Mapping(Child(map, key), path) is not { } node)
            {
                return ImmutableDictionary<string, string>.Empty;
            }
            var builder = ImmutableDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
            foreach (var (k, v) in node.Children)
            {
                var name = (k as YamlScalarNode)?.Value ?? "";
                builder[name] = Scalar(v, Join(path, name)) ?? "";
            }
            return builder.ToImmutable();
        }
    }
}
