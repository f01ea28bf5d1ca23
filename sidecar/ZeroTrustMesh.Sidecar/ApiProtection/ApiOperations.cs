using System.Buffers;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Primitives;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;

namespace ZeroTrustMesh.Sidecar.ApiProtection;

/// <summary>
/// The operations of one compiled ApiSpec, ready to match requests: path templates split into segments (a literal
/// segment beats a parameter, so <c>/users/me</c> wins over <c>/users/{id}</c>), every schema compiled once.
/// Immutable; built when a config is applied.
/// </summary>
internal sealed class ApiOperations
{
    private readonly CompiledOperation[] _operations;

    public ApiOperations(ApiSpec spec, string policy)
    {
        ArgumentNullException.ThrowIfNull(spec);
        _operations = [.. spec.Spec.Operations.Select(o => new CompiledOperation(o, spec.Spec, policy))
            .OrderByDescending(o => o.Template.LiteralSegments)];
    }

    public int Count => _operations.Length;

    /// <summary>The operation a request is for; or why none is (null operation). Allocates nothing when one matches.</summary>
    /// <param name="path">The normalized path, without query string.</param>
    public OperationMatch Match(string method, ReadOnlySpan<char> path)
    {
        string? declaredMethods = null;
        foreach (var operation in _operations)
        {
            if (!operation.Template.Matches(path))
            {
                continue;
            }
            if (operation.Operation.Method == method || (method == "HEAD" && operation.Operation.Method == "GET" && !HasHead(path)))
            {
                return new OperationMatch(operation, null);
            }
            declaredMethods = declaredMethods is null ? operation.Operation.Method : $"{declaredMethods}, {operation.Operation.Method}";
        }
        return new OperationMatch(null, declaredMethods is null
            ? $"{method} {path} is not an operation of the API"
            : $"{method} {path} is not an operation of the API (the path allows {declaredMethods})");
    }

    private bool HasHead(ReadOnlySpan<char> path)
    {
        foreach (var operation in _operations)
        {
            if (operation.Operation.Method == "HEAD" && operation.Template.Matches(path))
            {
                return true;
            }
        }
        return false;
    }
}

/// <summary>The matched operation (its path parameters are read from the path with <see cref="ApiPathTemplate.Value(ReadOnlySpan{char}, int)"/>), or why none matched.</summary>
internal readonly record struct OperationMatch(CompiledOperation? Operation, string? Unknown);

/// <summary>One operation: its template, its parameters with their schemas, its body schema, its object rules.</summary>
internal sealed class CompiledOperation
{
    public CompiledOperation(ApiOperation operation, ApiSpecSpec spec, string policy)
    {
        Operation = operation;
        Template = new ApiPathTemplate(operation.Path);
        Parameters = [.. operation.Parameters.Select(p => new CompiledParameter(p, p.In == ParameterLocation.Path ? Template.IndexOf(p.Name) : -1))];
        Body = operation.Body?.Schema is { } body ? Compile(body, $"operation {operation.Id} body") : null;
        BodyRequired = operation.Body?.Required == true;
        Rules = [.. spec.ObjectAuthorization.Where(r => OperationSelector.Any(r.Operations, operation)).Select(r => new ObjectRule(policy, r))];
        RuleSegments = [.. Rules.Select(r => Template.IndexOf(r.Parameter))];
        Redactions = ApiRedactions.Compile(operation, spec.Redaction);
    }

    /// <summary>How its responses are redacted; null: not at all.</summary>
    public ApiRedactions? Redactions { get; }

    public ApiOperation Operation { get; }

    public ApiPathTemplate Template { get; }

    public CompiledParameter[] Parameters { get; }

    /// <summary>The JSON body's schema; null when the operation declares none (the body is not read).</summary>
    public ApiSchema? Body { get; }

    public bool BodyRequired { get; }

    public ObjectRule[] Rules { get; }

    /// <summary>For each rule, the segment index of its parameter.</summary>
    public int[] RuleSegments { get; }

    internal static ApiSchema Compile(string schema, string what)
    {
        try
        {
            return ApiSchema.Compile(schema);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{what}: the schema cannot be compiled: {e.Message}", e);
        }
    }
}

/// <summary>
/// A path, query or header parameter. Its text is converted to the schema's type (<c>integer</c>, <c>number</c>,
/// <c>boolean</c>, an <c>array</c> of them from repeated query parameters) before the schema checks it; text that does
/// not convert stays a string, and the schema says why it is wrong.
/// </summary>
internal sealed class CompiledParameter
{
    public CompiledParameter(ApiParameter parameter, int segment)
    {
        Parameter = parameter;
        Segment = segment;
        Schema = CompiledOperation.Compile(parameter.Schema, $"parameter {parameter.Name}");
        var node = JsonNode.Parse(parameter.Schema);
        Type = TypeOf(node);
        ItemType = Type == "array" ? TypeOf(node?["items"]) : null;
        Where = parameter.In switch { ParameterLocation.Path => "path", ParameterLocation.Header => "header", _ => "query" } + "." + parameter.Name;
    }

    public ApiParameter Parameter { get; }

    /// <summary>The template segment of a path parameter; -1 otherwise.</summary>
    public int Segment { get; }

    public ApiSchema Schema { get; }

    public string? Type { get; }

    public string? ItemType { get; }

    /// <summary><c>query.limit</c>, <c>path.userId</c>, <c>header.X-Request-Id</c>: where an error is.</summary>
    public string Where { get; }

    /// <summary>Checks the parameter's values (none: required or fine); adds every error (the list is made with the first).</summary>
    public void Check(StringValues values, ref List<string>? errors)
    {
        if (values.Count == 0)
        {
            if (Parameter.Required)
            {
                (errors ??= []).Add($"{Where}: required {(Parameter.In == ParameterLocation.Header ? "header" : "parameter")} is missing");
            }
            return;
        }
        var buffer = new ArrayBufferWriter<byte>(64);
        using (var json = new Utf8JsonWriter(buffer))
        {
            if (Type == "array")
            {
                json.WriteStartArray();
                foreach (var value in values.Count == 1 ? values[0]!.Split(',') : (IEnumerable<string?>)values)
                {
                    Write(json, ItemType, value ?? "");
                }
                json.WriteEndArray();
            }
            else
            {
                Write(json, Type, values[0] ?? "");
            }
        }
        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        foreach (var error in Schema.Errors(document.RootElement))
        {
            (errors ??= []).Add($"{Where}{error.Location}: {error.Reason}");
        }
    }

    private static void Write(Utf8JsonWriter json, string? type, string text)
    {
        switch (type)
        {
            case "integer" or "number" when decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number):
                json.WriteNumberValue(number);
                break;
            case "boolean" when text is "true" or "false":
                json.WriteBooleanValue(text == "true");
                break;
            default:
                json.WriteStringValue(text);
                break;
        }
    }

    private static string? TypeOf(JsonNode? schema) => schema?["type"] switch
    {
        JsonValue value when value.TryGetValue<string>(out var type) => type,
        JsonArray types => types.Select(t => t?.GetValue<string>()).FirstOrDefault(t => t is not null and not "null"),
        _ => null,
    };
}
