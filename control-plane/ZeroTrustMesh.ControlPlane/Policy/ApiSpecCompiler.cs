using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.OpenApi;
using Microsoft.OpenApi.Reader;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Validation;
using ParameterLocation = ZeroTrustMesh.Policy.Kinds.ParameterLocation;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>
/// Turns an operator's <see cref="ApiSpec"/> (with its OpenAPI document) into the form sidecars receive: one
/// <see cref="ApiOperation"/> per operation with self-contained JSON Schema 2020-12 documents, and no document.
/// <list type="number">
/// <item>Microsoft.OpenApi parses the document (3.0 or 3.1, JSON or YAML) and validates it with its default rules;
/// every error is reported with its JSON pointer in the document.</item>
/// <item>The parsed document is written back as JSON in its own version, and every <c>$ref</c> in it must resolve
/// inside it (external references are refused: inline them).</item>
/// <item>Each schema an operation uses becomes one document: the schema, plus the component schemas it reaches under
/// <c>$defs</c>; a 3.0 document's schemas go through <see cref="OpenApi30Schema"/> first. Each must compile with
/// <see cref="ApiSchema"/>, or the apply is refused naming where it is.</item>
/// <item>Every <c>objectAuthorization</c> and <c>redaction</c> entry must select an operation, and an object rule's
/// parameter must be a path parameter of every operation it selects.</item>
/// </list>
/// Nothing is applied when any step reports an error: the caller refuses the whole apply.
/// </summary>
internal static class ApiSpecCompiler
{
    private const string ComponentsPrefix = "#/components/schemas/";
    private static readonly string[] Methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    /// <summary>The compiled resource, or null with every error in <paramref name="errors"/> (paths under <c>spec.openapi</c>).</summary>
    /// <param name="readFile">Reads <c>spec.openapi.file</c>; null where files are not served (Kubernetes).</param>
    public static ApiSpec? Compile(ApiSpec resource, Func<string, string>? readFile, ErrorSink errors)
    {
        ArgumentNullException.ThrowIfNull(resource);
        if (resource.IsCompiled)
        {
            return resource;
        }
        var before = errors.Count;
        var source = resource.Spec.OpenApi!;
        string? text = source.Inline;
        if (source.File is { } file)
        {
            if (readFile is null)
            {
                errors.Add("spec.openapi.file", "files are read only by a control plane with a policy directory; put the document inline");
                return null;
            }
            try
            {
                text = readFile(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                errors.Add("spec.openapi.file", $"'{file}' cannot be read: {e.Message}");
                return null;
            }
        }
        if (Parse(text ?? "", errors) is not { } root)
        {
            return null;
        }
        var version = root["openapi"]?.GetValue<string>() ?? "";
        var is30 = version.StartsWith("3.0", StringComparison.Ordinal);
        CheckReferences(root, root, "", errors);
        if (errors.Count > before)
        {
            return null;
        }
        var components = root["components"]?["schemas"] as JsonObject ?? [];
        var schemas = new SchemaBuilder(components, is30, errors);
        var undeclared = resource.Spec.Redaction.Where(r => r.RemoveUndeclared).ToList();
        var operations = ImmutableArray.CreateBuilder<ApiOperation>();
        foreach (var (template, pathNode) in root["paths"] as JsonObject ?? [])
        {
            if (pathNode is not JsonObject pathItem)
            {
                continue;
            }
            var at = $"/paths/{Escape(template)}";
            var shared = pathItem["parameters"] as JsonArray ?? [];
            foreach (var method in Methods)
            {
                if (pathItem[method] is not JsonObject operation)
                {
                    continue;
                }
                var opAt = $"{at}/{method}";
                var upper = method.ToUpperInvariant();
                var id = operation["operationId"]?.GetValue<string>() ?? $"{upper} {template}";
                var parameters = Parameters(root, template, shared, operation["parameters"] as JsonArray ?? [], opAt, schemas);
                var body = Body(root, operation["requestBody"], $"{opAt}/requestBody", schemas);
                var compiled = new ApiOperation(id, upper, template, parameters, body, [], Deprecated: operation["deprecated"] is JsonValue deprecated && deprecated.GetValueKind() == JsonValueKind.True);
                if (undeclared.Any(r => OperationSelector.Any(r.Operations, compiled)))
                {
                    compiled = compiled with { Responses = Responses(root, operation["responses"] as JsonObject, $"{opAt}/responses", schemas) };
                }
                operations.Add(compiled);
            }
        }
        var result = operations.ToImmutable();
        CheckSelections(resource.Spec, result, errors);
        return errors.Count > before ? null
            : resource with { Spec = resource.Spec with { OpenApi = null, Operations = result } };
    }

    /// <summary>Parses and validates with Microsoft.OpenApi; the document as JSON in its own version, or null after errors.</summary>
    private static JsonObject? Parse(string text, ErrorSink errors)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            errors.Add("spec.openapi", "the document is empty");
            return null;
        }
        var settings = new OpenApiReaderSettings();
        settings.AddYamlReader();
        ReadResult read;
        try
        {
            read = OpenApiDocument.Parse(text, null, settings);
        }
        catch (Exception e) when (e is OpenApiException or JsonException or FormatException or InvalidOperationException or ArgumentException)
        {
            errors.Add("spec.openapi", $"not an OpenAPI document: {e.Message}");
            return null;
        }
        var found = false;
        foreach (var error in read.Diagnostic?.Errors ?? [])
        {
            found = true;
            errors.Add(At(error.Pointer), error.Message);
        }
        if (read.Document is not { } document)
        {
            if (!found)
            {
                errors.Add("spec.openapi", "not an OpenAPI 3.0 or 3.1 document");
            }
            return null;
        }
        var version = read.Diagnostic?.SpecificationVersion;
        if (version is not (OpenApiSpecVersion.OpenApi3_0 or OpenApiSpecVersion.OpenApi3_1))
        {
            errors.Add("spec.openapi", $"OpenAPI {version} is not supported: use 3.0 or 3.1");
            return null;
        }
        // The reader reports some rule breaks too: each error once.
        var reported = (read.Diagnostic?.Errors ?? []).Select(e => (At(e.Pointer), e.Message)).ToHashSet();
        foreach (var error in document.Validate(ValidationRuleSet.GetDefaultRuleSet()) ?? [])
        {
            found = true;
            if (reported.Add((At(error.Pointer), error.Message)))
            {
                errors.Add(At(error.Pointer), error.Message);
            }
        }
        if (found)
        {
            return null;
        }
        using var writer = new StringWriter(CultureInfo.InvariantCulture);
        var json = new OpenApiJsonWriter(writer, new OpenApiJsonWriterSettings { Terse = true });
        if (version == OpenApiSpecVersion.OpenApi3_0)
        {
            document.SerializeAsV3(json);
        }
        else
        {
            document.SerializeAsV31(json);
        }
        return JsonNode.Parse(writer.ToString()) as JsonObject;
    }

    private static string At(string? pointer) => string.IsNullOrEmpty(pointer) ? "spec.openapi" : $"spec.openapi {(pointer.StartsWith('#') ? pointer : "#" + pointer)}";

    /// <summary>Every <c>$ref</c> must point into the document.</summary>
    private static void CheckReferences(JsonObject root, JsonNode? node, string at, ErrorSink errors)
    {
        switch (node)
        {
            case JsonObject map:
                foreach (var (name, value) in map)
                {
                    if (name == "$ref" && value is JsonValue reference && reference.TryGetValue<string>(out var target))
                    {
                        if (!target.StartsWith('#'))
                        {
                            errors.Add(At(at), $"$ref '{target}' is external: only references inside the document are supported (inline it)");
                        }
                        else if (Resolve(root, target) is null)
                        {
                            errors.Add(At(at), $"$ref '{target}' does not resolve: nothing in the document is at that place");
                        }
                        continue;
                    }
                    // Examples and extensions are data, not references.
                    if (name is "example" or "examples" or "default" or "enum" or "const" || name.StartsWith("x-", StringComparison.Ordinal))
                    {
                        continue;
                    }
                    CheckReferences(root, value, $"{at}/{Escape(name)}", errors);
                }
                break;
            case JsonArray list:
                for (var i = 0; i < list.Count; i++)
                {
                    CheckReferences(root, list[i], $"{at}/{i.ToString(CultureInfo.InvariantCulture)}", errors);
                }
                break;
        }
    }

    private static JsonNode? Resolve(JsonObject root, string reference)
    {
        JsonNode? node = root;
        foreach (var raw in reference.TrimStart('#').Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var token = Uri.UnescapeDataString(raw).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            node = node switch
            {
                JsonObject map => map[token],
                JsonArray list when int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i < list.Count => list[i],
                _ => null,
            };
            if (node is null)
            {
                return null;
            }
        }
        return node;
    }

    /// <summary>Follows a <c>$ref</c> of a parameter, request body or response (checked to resolve already).</summary>
    private static JsonObject? Deref(JsonObject root, JsonNode? node)
    {
        for (var hops = 0; hops < 16 && node is JsonObject map && map["$ref"] is JsonValue reference; hops++)
        {
            node = Resolve(root, reference.GetValue<string>());
        }
        return node as JsonObject;
    }

    private static ImmutableArray<ApiParameter> Parameters(JsonObject root, string template, JsonArray shared, JsonArray own, string at, SchemaBuilder schemas)
    {
        var byKey = new Dictionary<(string, string), (JsonObject Parameter, string At)>();
        for (var i = 0; i < shared.Count; i++)
        {
            Add(Deref(root, shared[i]), $"{at[..at.LastIndexOf('/')]}/parameters/{i}");
        }
        for (var i = 0; i < own.Count; i++)
        {
            Add(Deref(root, own[i]), $"{at}/parameters/{i}");
        }
        var parameters = ImmutableArray.CreateBuilder<ApiParameter>();
        foreach (var ((name, location), (parameter, where)) in byKey)
        {
            var kind = location switch { "path" => ParameterLocation.Path, "header" => ParameterLocation.Header, "query" => ParameterLocation.Query, _ => (ParameterLocation?)null };
            if (kind is not { } known)
            {
                continue; // cookies are not checked
            }
            var schema = schemas.Build(parameter["schema"], $"{where}/schema") ?? "true";
            parameters.Add(new ApiParameter(name, known, known == ParameterLocation.Path || parameter["required"]?.GetValue<bool>() == true, schema));
        }
        // A template parameter the document forgot to declare is still a segment: any string.
        foreach (var segment in template.Split('/'))
        {
            if (segment.Length > 2 && segment[0] == '{' && segment[^1] == '}' && !byKey.ContainsKey((segment[1..^1], "path")))
            {
                parameters.Add(new ApiParameter(segment[1..^1], ParameterLocation.Path, true, "true"));
            }
        }
        return parameters.ToImmutable();

        void Add(JsonObject? parameter, string where)
        {
            if (parameter?["name"]?.GetValue<string>() is { } name && parameter["in"]?.GetValue<string>() is { } location)
            {
                byKey[(name, location)] = (parameter, where);
            }
        }
    }

    private static ApiBody? Body(JsonObject root, JsonNode? node, string at, SchemaBuilder schemas)
    {
        if (Deref(root, node) is not { } body)
        {
            return null;
        }
        var required = body["required"]?.GetValue<bool>() == true;
        foreach (var (mediaType, content) in body["content"] as JsonObject ?? [])
        {
            if (IsJson(mediaType))
            {
                return new ApiBody(required, schemas.Build(content?["schema"], $"{at}/content/{Escape(mediaType)}/schema") ?? "true");
            }
        }
        return new ApiBody(required, null);
    }

    private static ImmutableArray<ApiResponseSchema> Responses(JsonObject root, JsonObject? responses, string at, SchemaBuilder schemas)
    {
        var result = ImmutableArray.CreateBuilder<ApiResponseSchema>();
        foreach (var (status, node) in responses ?? [])
        {
            if (Deref(root, node)?["content"] is not JsonObject content)
            {
                continue;
            }
            foreach (var (mediaType, media) in content)
            {
                if (IsJson(mediaType) && media?["schema"] is { } schema && schemas.Build(schema, $"{at}/{Escape(status)}/content/{Escape(mediaType)}/schema") is { } built)
                {
                    result.Add(new ApiResponseSchema(status == "default" ? status : status.ToUpperInvariant(), built));
                    break;
                }
            }
        }
        return result.ToImmutable();
    }

    private static bool IsJson(string mediaType)
    {
        var type = mediaType.Split(';')[0].Trim();
        return type.Equals("application/json", StringComparison.OrdinalIgnoreCase) || type.EndsWith("+json", StringComparison.OrdinalIgnoreCase);
    }

    private static void CheckSelections(ApiSpecSpec spec, ImmutableArray<ApiOperation> operations, ErrorSink errors)
    {
        for (var i = 0; i < spec.ObjectAuthorization.Length; i++)
        {
            var rule = spec.ObjectAuthorization[i];
            for (var s = 0; s < rule.Operations.Length; s++)
            {
                var selector = OperationSelector.Parse(rule.Operations[s]);
                var selected = operations.Where(selector.Matches).ToList();
                if (selected.Count == 0)
                {
                    errors.Add($"spec.objectAuthorization[{i}].operations[{s}]", $"'{rule.Operations[s]}' selects no operation of the document");
                }
                foreach (var operation in selected.Where(o => !o.Parameters.Any(p => p.In == ParameterLocation.Path && p.Name == rule.Parameter)))
                {
                    errors.Add($"spec.objectAuthorization[{i}].parameter", $"'{rule.Parameter}' is not a path parameter of {operation.Method} {operation.Path} ({operation.Id})");
                }
            }
        }
        for (var i = 0; i < spec.Redaction.Length; i++)
        {
            var setting = spec.Redaction[i];
            for (var s = 0; s < setting.Operations.Length; s++)
            {
                if (!operations.Any(OperationSelector.Parse(setting.Operations[s]).Matches))
                {
                    errors.Add($"spec.redaction[{i}].operations[{s}]", $"'{setting.Operations[s]}' selects no operation of the document");
                }
            }
        }
    }

    private static string Escape(string token) => token.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    /// <summary>Builds self-contained 2020-12 schema documents out of the document's schemas, and checks each compiles.</summary>
    private sealed class SchemaBuilder(JsonObject components, bool is30, ErrorSink errors)
    {
        private readonly Dictionary<string, JsonNode?> _adapted = [];

        public string? Build(JsonNode? schema, string at)
        {
            if (schema is null)
            {
                return null;
            }
            var root = Adapt(schema) is JsonObject map ? map : new JsonObject { ["allOf"] = new JsonArray(Adapt(schema)) };
            var defs = new JsonObject();
            var pending = new Queue<JsonNode?>([root]);
            while (pending.TryDequeue(out var next))
            {
                foreach (var name in References(next))
                {
                    if (!defs.ContainsKey(name) && components[name] is not null)
                    {
                        var component = Component(name);
                        defs[name] = component?.DeepClone();
                        pending.Enqueue(defs[name]);
                    }
                }
            }
            Rewrite(root);
            Rewrite(defs);
            root["$schema"] = "https://json-schema.org/draft/2020-12/schema";
            if (defs.Count > 0)
            {
                root["$defs"] = defs;
            }
            var text = root.ToJsonString();
            try
            {
                ApiSchema.Compile(text);
            }
            catch (ArgumentException e)
            {
                errors.Add(At(at), $"the schema cannot be compiled: {e.Message}");
                return null;
            }
            return text;
        }

        private JsonNode? Adapt(JsonNode schema) => is30 ? OpenApi30Schema.ToDraft202012(schema) : schema.DeepClone();

        private JsonNode? Component(string name)
        {
            if (!_adapted.TryGetValue(name, out var adapted))
            {
                adapted = components[name] is { } raw ? Adapt(raw) : null;
                _adapted[name] = adapted;
            }
            return adapted;
        }

        private static IEnumerable<string> References(JsonNode? node)
        {
            switch (node)
            {
                case JsonObject map:
                    foreach (var (name, value) in map)
                    {
                        if (name == "$ref" && value is JsonValue reference && reference.TryGetValue<string>(out var target) && target.StartsWith(ComponentsPrefix, StringComparison.Ordinal))
                        {
                            yield return Unescape(target[ComponentsPrefix.Length..].Split('/')[0]);
                        }
                        foreach (var inner in References(value))
                        {
                            yield return inner;
                        }
                    }
                    break;
                case JsonArray list:
                    foreach (var item in list)
                    {
                        foreach (var inner in References(item))
                        {
                            yield return inner;
                        }
                    }
                    break;
            }
        }

        private static string Unescape(string token) => token.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);

        /// <summary><c>#/components/schemas/X</c> becomes <c>#/$defs/X</c>, where the copy lives.</summary>
        private static void Rewrite(JsonNode? node)
        {
            switch (node)
            {
                case JsonObject map:
                    if (map["$ref"] is JsonValue reference && reference.TryGetValue<string>(out var target) && target.StartsWith(ComponentsPrefix, StringComparison.Ordinal))
                    {
                        map["$ref"] = "#/$defs/" + target[ComponentsPrefix.Length..];
                    }
                    foreach (var (_, value) in map.ToList())
                    {
                        Rewrite(value);
                    }
                    break;
                case JsonArray list:
                    foreach (var item in list)
                    {
                        Rewrite(item);
                    }
                    break;
            }
        }
    }
}
