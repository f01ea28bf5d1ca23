using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// <c>kind: ApiSpec</c>: reader, validator and wire form. The operator's form carries <c>spec.openapi</c>; the control
/// plane compiles it into <c>spec.operations</c> (and drops the document), which is the wire form sidecars read.
/// Schemas travel as JSON values inside the wire form.
/// </summary>
public sealed class ApiSpecKind : PolicyKind<ApiSpec>
{
    public static readonly ApiSpecKind Instance = new();

    /// <summary>The largest body limit an ApiSpec may ask for (a sidecar buffers the body up to it).</summary>
    public const int MaxBodyLimit = 64 * 1024 * 1024;

    private ApiSpecKind()
    {
    }

    public override string Name => ApiSpec.KindName;

    protected override ApiSpec ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader)
    {
        if (spec is null)
        {
            return new ApiSpec(metadata, new ApiSpecSpec(null, ApiMode.DryRun, UnknownOperations.Report, ApiSpec.DefaultMaxBodyBytes, null, [], [], default));
        }
        reader.Keys(spec, "spec", "selector", "mode", "unknownOperations", "maxBodyBytes", "openapi", "objectAuthorization", "redaction", "operations");
        var mode = reader.Text(spec, "mode", "spec") switch
        {
            null or "DryRun" => ApiMode.DryRun,
            "Enforce" => ApiMode.Enforce,
            var other => Invalid(ApiMode.DryRun, "spec.mode", $"'{other}' is not a mode: use DryRun or Enforce"),
        };
        var unknown = reader.Text(spec, "unknownOperations", "spec") switch
        {
            null or "Report" => UnknownOperations.Report,
            "Allow" => UnknownOperations.Allow,
            "Deny" => UnknownOperations.Deny,
            var other => Invalid(UnknownOperations.Report, "spec.unknownOperations", $"'{other}' is not a setting: use Allow, Report or Deny"),
        };
        var maxBody = reader.Number(SpecReader.Child(spec, "maxBodyBytes"), "spec.maxBodyBytes") ?? ApiSpec.DefaultMaxBodyBytes;
        ApiDocumentSource? openApi = null;
        if (reader.Mapping(SpecReader.Child(spec, "openapi"), "spec.openapi") is { } source)
        {
            reader.Keys(source, "spec.openapi", "inline", "file");
            openApi = new ApiDocumentSource(reader.Text(source, "inline", "spec.openapi"), reader.Text(source, "file", "spec.openapi"));
        }
        var rules = reader.List(spec, "objectAuthorization", "spec", (node, path) =>
        {
            if (reader.Mapping(node, path) is not { } map)
            {
                return new ObjectAuthorizationRule("", [], "", "", []);
            }
            reader.Keys(map, path, "name", "operations", "parameter", "equals", "unless");
            return new ObjectAuthorizationRule(reader.Text(map, "name", path) ?? "", reader.Strings(map, "operations", path),
                reader.Text(map, "parameter", path) ?? "", reader.Text(map, "equals", path) ?? "",
                reader.List(map, "unless", path, (n, p) => AuthorizationPolicyKind.ReadCondition(reader, n, p)));
        });
        var redaction = reader.List(spec, "redaction", "spec", (node, path) =>
        {
            if (reader.Mapping(node, path) is not { } map)
            {
                return new RedactionSetting([], "", [], [], false);
            }
            reader.Keys(map, path, "operations", "status", "remove", "mask", "removeUndeclared");
            return new RedactionSetting(reader.Strings(map, "operations", path), reader.Text(map, "status", path) ?? "2XX",
                reader.Strings(map, "remove", path), reader.Strings(map, "mask", path), reader.Bool(map, "removeUndeclared", path) ?? false);
        });
        var operations = SpecReader.Has(spec, "operations")
            ? reader.List(spec, "operations", "spec", (node, path) => ReadOperation(reader, node, path))
            : default;
        return new ApiSpec(metadata, new ApiSpecSpec(reader.Selector(spec), mode, unknown, maxBody, openApi, rules, redaction, operations));

        T Invalid<T>(T fallback, string path, string message)
        {
            reader.Errors.Add(path, message);
            return fallback;
        }
    }

    private static ApiOperation ReadOperation(SpecReader reader, JsonNode? node, string path)
    {
        if (reader.Mapping(node, path) is not { } map)
        {
            return new ApiOperation("", "GET", "/", [], null, []);
        }
        reader.Keys(map, path, "id", "method", "path", "parameters", "body", "responses", "deprecated");
        var parameters = reader.List(map, "parameters", path, (n, p) =>
        {
            if (reader.Mapping(n, p) is not { } parameter)
            {
                return new ApiParameter("", ParameterLocation.Query, false, "true");
            }
            reader.Keys(parameter, p, "name", "in", "required", "schema");
            var location = reader.Text(parameter, "in", p) switch
            {
                "path" => ParameterLocation.Path,
                "header" => ParameterLocation.Header,
                "query" => ParameterLocation.Query,
                var other => Invalid(ParameterLocation.Query, $"{p}.in", $"'{other}' is not a parameter location: path, query or header"),
            };
            return new ApiParameter(reader.Text(parameter, "name", p) ?? "", location, reader.Bool(parameter, "required", p) ?? false, Schema(parameter, p) ?? "true");
        });
        ApiBody? body = null;
        if (reader.Mapping(SpecReader.Child(map, "body"), $"{path}.body") is { } bodyMap)
        {
            reader.Keys(bodyMap, $"{path}.body", "required", "schema");
            body = new ApiBody(reader.Bool(bodyMap, "required", $"{path}.body") ?? false, Schema(bodyMap, $"{path}.body"));
        }
        var responses = reader.List(map, "responses", path, (n, p) =>
        {
            if (reader.Mapping(n, p) is not { } response)
            {
                return new ApiResponseSchema("default", "true");
            }
            reader.Keys(response, p, "status", "schema");
            return new ApiResponseSchema(reader.Text(response, "status", p) ?? "default", Schema(response, p) ?? "true");
        });
        return new ApiOperation(reader.Text(map, "id", path) ?? "", reader.Text(map, "method", path) ?? "GET", reader.Text(map, "path", path) ?? "/", parameters, body, responses,
            reader.Bool(map, "deprecated", path) ?? false);

        T Invalid<T>(T fallback, string at, string message)
        {
            reader.Errors.Add(at, message);
            return fallback;
        }

        // A schema is a JSON value (object or boolean) in the wire form.
        static string? Schema(JsonObject map, string at) => SpecReader.Child(map, "schema")?.ToJsonString();
    }

    protected override void WriteSpec(ApiSpec resource, Utf8JsonWriter json)
    {
        var spec = resource.Spec;
        ResourceWriter.Selector(json, spec.Selector);
        json.WriteString("mode", spec.Mode == ApiMode.Enforce ? "Enforce" : "DryRun");
        json.WriteString("unknownOperations", spec.UnknownOperations.ToString());
        json.WriteNumber("maxBodyBytes", spec.MaxBodyBytes);
        if (spec.OpenApi is { } source)
        {
            json.WriteStartObject("openapi");
            ResourceWriter.Optional(json, "inline", source.Inline);
            ResourceWriter.Optional(json, "file", source.File);
            json.WriteEndObject();
        }
        ResourceWriter.Objects(json, "objectAuthorization", spec.ObjectAuthorization, static (json, rule) =>
        {
            json.WriteString("name", rule.Name);
            ResourceWriter.Strings(json, "operations", rule.Operations);
            json.WriteString("parameter", rule.Parameter);
            json.WriteString("equals", rule.EqualsKey);
            ResourceWriter.Objects(json, "unless", rule.Unless, AuthorizationPolicyKind.WriteCondition);
        });
        ResourceWriter.Objects(json, "redaction", spec.Redaction, static (json, setting) =>
        {
            ResourceWriter.Strings(json, "operations", setting.Operations);
            json.WriteString("status", setting.Status);
            ResourceWriter.Strings(json, "remove", setting.Remove);
            ResourceWriter.Strings(json, "mask", setting.Mask);
            if (setting.RemoveUndeclared)
            {
                json.WriteBoolean("removeUndeclared", true);
            }
        });
        if (!spec.Operations.IsDefault)
        {
            json.WriteStartArray("operations");
            foreach (var operation in spec.Operations)
            {
                WriteOperation(json, operation);
            }
            json.WriteEndArray();
        }
    }

    private static void WriteOperation(Utf8JsonWriter json, ApiOperation operation)
    {
        json.WriteStartObject();
        json.WriteString("id", operation.Id);
        json.WriteString("method", operation.Method);
        json.WriteString("path", operation.Path);
        ResourceWriter.Objects(json, "parameters", operation.Parameters, static (json, parameter) =>
        {
            json.WriteString("name", parameter.Name);
            json.WriteString("in", parameter.In switch { ParameterLocation.Path => "path", ParameterLocation.Header => "header", _ => "query" });
            if (parameter.Required)
            {
                json.WriteBoolean("required", true);
            }
            WriteSchema(json, parameter.Schema);
        });
        if (operation.Body is { } body)
        {
            json.WriteStartObject("body");
            if (body.Required)
            {
                json.WriteBoolean("required", true);
            }
            if (body.Schema is not null)
            {
                WriteSchema(json, body.Schema);
            }
            json.WriteEndObject();
        }
        ResourceWriter.Objects(json, "responses", operation.Responses, static (json, response) =>
        {
            json.WriteString("status", response.Status);
            WriteSchema(json, response.Schema);
        });
        if (operation.Deprecated)
        {
            json.WriteBoolean("deprecated", true);
        }
        json.WriteEndObject();
    }

    private static void WriteSchema(Utf8JsonWriter json, string schema)
    {
        json.WritePropertyName("schema");
        json.WriteRawValue(schema);
    }

    protected override void Validate(ApiSpec resource, ErrorSink errors)
    {
        var spec = resource.Spec;
        if (spec.OpenApi is null && spec.Operations.IsDefault)
        {
            errors.Add("spec.openapi", "the service's OpenAPI 3.0 or 3.1 document is required: openapi: {inline: <document>} or {file: <name>}");
        }
        if (spec.OpenApi is { } source)
        {
            if ((source.Inline is null) == (source.File is null))
            {
                errors.Add("spec.openapi", "give exactly one of 'inline' (the document) and 'file' (a file next to the policy files)");
            }
            if (!spec.Operations.IsDefault)
            {
                errors.Add("spec.operations", "operations are compiled by the control plane from spec.openapi; remove them");
            }
        }
        if (spec.MaxBodyBytes is < 1 or > MaxBodyLimit)
        {
            errors.Add("spec.maxBodyBytes", $"{spec.MaxBodyBytes} must be 1 to {MaxBodyLimit.ToString(CultureInfo.InvariantCulture)}");
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < Checks.Length(spec.ObjectAuthorization); i++)
        {
            var rule = spec.ObjectAuthorization[i];
            var path = $"spec.objectAuthorization[{i}]";
            if (rule.Name.Length == 0)
            {
                errors.Add($"{path}.name", "a name is required (a refusal names the rule)");
            }
            else if (!names.Add(rule.Name))
            {
                errors.Add($"{path}.name", $"'{rule.Name}' names two rules");
            }
            ValidateSelectors(rule.Operations, $"{path}.operations", errors);
            if (rule.Parameter.Length == 0)
            {
                errors.Add($"{path}.parameter", "the path parameter to check is required, e.g. userId");
            }
            if (ObjectAttribute.Validate(rule.EqualsKey) is { } error)
            {
                errors.Add($"{path}.equals", error);
            }
            for (var c = 0; c < Checks.Length(rule.Unless); c++)
            {
                AuthorizationPolicyKind.ValidateCondition(rule.Unless[c], $"{path}.unless[{c}]", errors);
            }
        }
        for (var i = 0; i < Checks.Length(spec.Redaction); i++)
        {
            var setting = spec.Redaction[i];
            var path = $"spec.redaction[{i}]";
            ValidateSelectors(setting.Operations, $"{path}.operations", errors);
            if (!ApiStatus.IsValid(setting.Status))
            {
                errors.Add($"{path}.status", $"'{setting.Status}' is not a response status: use a code (200), a range (2XX) or default");
            }
            Checks.Each(setting.Remove, $"{path}.remove", errors, ValidatePointer);
            Checks.Each(setting.Mask, $"{path}.mask", errors, ValidatePointer);
            if (Checks.Length(setting.Remove) + Checks.Length(setting.Mask) == 0 && !setting.RemoveUndeclared)
            {
                errors.Add(path, "a redaction needs remove, mask or removeUndeclared: true");
            }
        }
        for (var i = 0; i < Checks.Length(spec.Operations); i++)
        {
            var operation = spec.Operations[i];
            if (PolicySyntax.ValidateMethod(operation.Method) is { } methodError)
            {
                errors.Add($"spec.operations[{i}].method", methodError);
            }
            if (!operation.Path.StartsWith('/'))
            {
                errors.Add($"spec.operations[{i}].path", $"'{operation.Path}' must start with '/'");
            }
        }
    }

    public override void ValidateSet(IReadOnlyList<PolicyDocument> documents, List<PolicyError> errors)
    {
        // One ApiSpec per workload: two documents for one service would leave it unclear which one speaks.
        foreach (var group in documents.Where(d => d.Resource is ApiSpec)
                     .GroupBy(d => (d.Resource.Metadata.Namespace, d.Resource.Selector?.Service))
                     .Where(g => g.Count() > 1))
        {
            var names = string.Join(", ", group.Select(d => d.Resource.Metadata.Name).Order(StringComparer.Ordinal));
            var target = group.Key.Service is { } service ? $"service '{service}'" : "the whole namespace";
            foreach (var document in group)
            {
                errors.Add(new PolicyError(document.Location, $"two ApiSpecs ({names}) select {target} in namespace '{group.Key.Namespace}': keep one"));
            }
        }
    }

    private static void ValidateSelectors(ImmutableArray<string> selectors, string path, ErrorSink errors)
    {
        if (Checks.Length(selectors) == 0)
        {
            errors.Add(path, "name the operations: an operationId, or 'METHOD /path/template' ('*' for any method; a trailing '/*' for every path under it)");
        }
        Checks.Each(selectors, path, errors, OperationSelector.Validate);
    }

    private static string? ValidatePointer(string pointer) =>
        pointer.Length == 0 || pointer[0] != '/'
            ? $"'{pointer}' is not a JSON pointer: it starts with '/' (e.g. /password, /users/*/ssn)"
            : pointer.Replace("~0", "", StringComparison.Ordinal).Replace("~1", "", StringComparison.Ordinal).Contains('~', StringComparison.Ordinal)
                ? $"'{pointer}': '~' is written '~0' and '/' inside a name '~1' (RFC 6901)"
                : null;
}

/// <summary>Response status keys as OpenAPI writes them: a code, a range (<c>2XX</c>), or <c>default</c>.</summary>
public static class ApiStatus
{
    public static bool IsValid(string status) =>
        status == "default"
        || (status.Length == 3 && status[0] is >= '1' and <= '5'
            && ((char.IsAsciiDigit(status[1]) && char.IsAsciiDigit(status[2])) || status[1..] == "XX"));

    /// <summary>Whether <paramref name="status"/> (a key) covers <paramref name="code"/>.</summary>
    public static bool Covers(string status, int code) =>
        status == "default"
        || (status.EndsWith("XX", StringComparison.Ordinal) ? code / 100 == status[0] - '0'
            : int.TryParse(status, NumberStyles.None, CultureInfo.InvariantCulture, out var exact) && exact == code);

    /// <summary>How specific a key is: an exact code beats a range, a range beats <c>default</c>.</summary>
    public static int Specificity(string status) => status == "default" ? 0 : status.EndsWith("XX", StringComparison.Ordinal) ? 1 : 2;
}
