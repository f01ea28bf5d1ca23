using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary><c>kind: RequestAuthentication</c>: reader, validator and wire form. The sidecar enforces it as its JWT stage.</summary>
public sealed class RequestAuthenticationKind : PolicyKind<RequestAuthentication>
{
    public static readonly RequestAuthenticationKind Instance = new();

    private RequestAuthenticationKind()
    {
    }

    public override string Name => RequestAuthentication.KindName;

    protected override RequestAuthentication ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader)
    {
        if (spec is null)
        {
            return new RequestAuthentication(metadata, new RequestAuthenticationSpec(null, []));
        }
        reader.Keys(spec, "spec", "selector", "jwtRules");
        var rules = reader.List(spec, "jwtRules", "spec", (node, path) =>
        {
            if (reader.Mapping(node, path) is not { } map)
            {
                return new JwtRule("", [], null, null);
            }
            reader.Keys(map, path, "issuer", "audiences", "jwksUri", "jwks", "forwardOriginalToken");
            return new JwtRule(reader.Text(map, "issuer", path) ?? "", reader.Strings(map, "audiences", path), reader.Text(map, "jwksUri", path), reader.Text(map, "jwks", path))
            {
                ForwardOriginalToken = reader.Bool(map, "forwardOriginalToken", path) ?? false,
            };
        });
        return new RequestAuthentication(metadata, new RequestAuthenticationSpec(reader.Selector(spec), rules));
    }

    protected override void WriteSpec(RequestAuthentication resource, Utf8JsonWriter json)
    {
        ResourceWriter.Selector(json, resource.Spec.Selector);
        ResourceWriter.Objects(json, "jwtRules", resource.Spec.JwtRules, static (json, rule) =>
        {
            json.WriteString("issuer", rule.Issuer);
            ResourceWriter.Strings(json, "audiences", rule.Audiences);
            ResourceWriter.Optional(json, "jwksUri", rule.JwksUri);
            ResourceWriter.Optional(json, "jwks", rule.Jwks);
            if (rule.ForwardOriginalToken)
            {
                json.WriteBoolean("forwardOriginalToken", true);
            }
        });
    }

    protected override void Validate(RequestAuthentication resource, ErrorSink errors)
    {
        var rules = resource.Spec.JwtRules;
        if (Checks.Length(rules) == 0)
        {
            errors.Add("spec.jwtRules", "at least one JWT rule is required");
        }
        var issuers = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < Checks.Length(rules); i++)
        {
            var rule = rules[i];
            var path = $"spec.jwtRules[{i}]";
            if (string.IsNullOrWhiteSpace(rule.Issuer))
            {
                errors.Add($"{path}.issuer", "an issuer is required");
            }
            else if (!issuers.Add(rule.Issuer))
            {
                errors.Add($"{path}.issuer", $"issuer '{rule.Issuer}' appears twice; one rule per issuer");
            }
            Checks.Each(rule.Audiences, $"{path}.audiences", errors, a => string.IsNullOrWhiteSpace(a) ? "an audience must not be empty" : null);
            switch (rule.JwksUri, rule.Jwks)
            {
                case (null, null):
                    errors.Add(path, "one of jwksUri or jwks is required");
                    break;
                case (not null, not null):
                    errors.Add(path, "give either jwksUri or jwks, not both");
                    break;
                case (not null, null):
                    if (!Uri.TryCreate(rule.JwksUri, UriKind.Absolute, out var uri)
                        || !(uri.Scheme == Uri.UriSchemeHttps || (uri.Scheme == Uri.UriSchemeHttp && uri.IsLoopback)))
                    {
                        // Keys fetched over plain http could be swapped on the way; loopback is allowed for local setups.
                        errors.Add($"{path}.jwksUri", $"'{rule.JwksUri}' must be an absolute https URL (http only on loopback)");
                    }
                    break;
                case (null, not null):
                    if (CheckJwks(rule.Jwks) is { } error)
                    {
                        errors.Add($"{path}.jwks", error);
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
}
