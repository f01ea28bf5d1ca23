using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary><c>kind: RateLimitPolicy</c>: reader, validator and wire form. The sidecar enforces it as its rate-limit stage.</summary>
public sealed class RateLimitPolicyKind : PolicyKind<RateLimitPolicy>
{
    public static readonly RateLimitPolicyKind Instance = new();

    private RateLimitPolicyKind()
    {
    }

    private static readonly TokenBucket Placeholder = new(1, RateUnit.Second, 0);

    public override string Name => RateLimitPolicy.KindName;

    protected override RateLimitPolicy ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader)
    {
        if (spec is null)
        {
            return new RateLimitPolicy(metadata, new RateLimitPolicySpec(null, null, [], []));
        }
        reader.Keys(spec, "spec", "selector", "perCaller", "routes", "overrides");
        var perCaller = Bucket(reader, SpecReader.Child(spec, "perCaller"), "spec.perCaller", required: false);
        var routes = reader.List(spec, "routes", "spec", (node, path) =>
        {
            if (reader.Mapping(node, path) is not { } map)
            {
                return new RouteRateLimit("*", [], Placeholder);
            }
            reader.Keys(map, path, "path", "methods", "limit");
            var routePath = reader.Text(map, "path", path);
            if (routePath is null)
            {
                reader.Errors.Add($"{path}.path", "a path is required ('*' for every path)");
            }
            return new RouteRateLimit(routePath ?? "*", reader.Strings(map, "methods", path),
                Bucket(reader, SpecReader.Child(map, "limit"), $"{path}.limit", required: true) ?? Placeholder);
        });
        var overrides = reader.List(spec, "overrides", "spec", (node, path) =>
        {
            if (reader.Mapping(node, path) is not { } map)
            {
                return new PrincipalRateLimit("", Placeholder);
            }
            reader.Keys(map, path, "principal", "limit");
            return new PrincipalRateLimit(reader.Text(map, "principal", path) ?? "",
                Bucket(reader, SpecReader.Child(map, "limit"), $"{path}.limit", required: true) ?? Placeholder);
        });
        return new RateLimitPolicy(metadata, new RateLimitPolicySpec(reader.Selector(spec), perCaller, routes, overrides));
    }

    private static TokenBucket? Bucket(SpecReader reader, JsonNode? node, string path, bool required)
    {
        if (reader.Mapping(node, path, required) is not { } map)
        {
            return null;
        }
        reader.Keys(map, path, "requestsPerUnit", "unit", "burst");
        var rate = reader.Number(SpecReader.Child(map, "requestsPerUnit"), $"{path}.requestsPerUnit");
        if (rate is null && !SpecReader.Has(map, "requestsPerUnit"))
        {
            reader.Errors.Add($"{path}.requestsPerUnit", "requestsPerUnit is required");
        }
        var unit = reader.Text(map, "unit", path) switch
        {
            null or "second" => RateUnit.Second,
            "minute" => RateUnit.Minute,
            "hour" => RateUnit.Hour,
            var other => InvalidUnit(other),
        };
        return new TokenBucket(rate ?? 1, unit, reader.Number(SpecReader.Child(map, "burst"), $"{path}.burst") ?? 0);

        RateUnit InvalidUnit(string value)
        {
            reader.Errors.Add($"{path}.unit", $"'{value}' is not a unit: use second, minute or hour");
            return RateUnit.Second;
        }
    }

    protected override void WriteSpec(RateLimitPolicy resource, Utf8JsonWriter json)
    {
        ResourceWriter.Selector(json, resource.Spec.Selector);
        if (resource.Spec.PerCaller is { } perCaller)
        {
            WriteBucket(json, "perCaller", perCaller);
        }
        ResourceWriter.Objects(json, "routes", resource.Spec.Routes, static (json, route) =>
        {
            json.WriteString("path", route.Path);
            ResourceWriter.Strings(json, "methods", route.Methods);
            WriteBucket(json, "limit", route.Limit);
        });
        ResourceWriter.Objects(json, "overrides", resource.Spec.Overrides, static (json, entry) =>
        {
            json.WriteString("principal", entry.Principal);
            WriteBucket(json, "limit", entry.Limit);
        });
    }

    private static void WriteBucket(Utf8JsonWriter json, string name, TokenBucket bucket)
    {
        json.WriteStartObject(name);
        json.WriteNumber("requestsPerUnit", bucket.RequestsPerUnit);
        json.WriteString("unit", bucket.Unit switch { RateUnit.Minute => "minute", RateUnit.Hour => "hour", _ => "second" });
        if (bucket.Burst != 0)
        {
            json.WriteNumber("burst", bucket.Burst);
        }
        json.WriteEndObject();
    }

    protected override void Validate(RateLimitPolicy resource, ErrorSink errors)
    {
        var spec = resource.Spec;
        if (spec.PerCaller is null && Checks.Length(spec.Routes) == 0 && Checks.Length(spec.Overrides) == 0)
        {
            errors.Add("spec", "a rate limit needs perCaller, routes or overrides");
        }
        if (spec.PerCaller is not null)
        {
            ValidateBucket(spec.PerCaller, "spec.perCaller", errors);
        }
        for (var i = 0; i < Checks.Length(spec.Routes); i++)
        {
            var route = spec.Routes[i];
            var path = $"spec.routes[{i}]";
            if (PolicySyntax.ValidatePath(route.Path) is { } error)
            {
                errors.Add($"{path}.path", error);
            }
            Checks.Each(route.Methods, $"{path}.methods", errors, PolicySyntax.ValidateMethod);
            ValidateBucket(route.Limit, $"{path}.limit", errors);
        }
        var principals = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < Checks.Length(spec.Overrides); i++)
        {
            var entry = spec.Overrides[i];
            var path = $"spec.overrides[{i}]";
            if (!SpiffeId.TryParse(entry.Principal, out _, out var error))
            {
                errors.Add($"{path}.principal", $"'{entry.Principal}' is not a SPIFFE ID: {error}");
            }
            else if (!principals.Add(entry.Principal))
            {
                errors.Add($"{path}.principal", $"'{entry.Principal}' has two overrides");
            }
            ValidateBucket(entry.Limit, $"{path}.limit", errors);
        }
    }

    private static void ValidateBucket(TokenBucket bucket, string path, ErrorSink errors)
    {
        if (bucket.RequestsPerUnit < 1)
        {
            errors.Add($"{path}.requestsPerUnit", $"{bucket.RequestsPerUnit} must be at least 1");
        }
        if (bucket.Burst < 0)
        {
            errors.Add($"{path}.burst", $"{bucket.Burst} must not be negative (0 means the same as requestsPerUnit)");
        }
    }
}
