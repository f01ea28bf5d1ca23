using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;
using ZeroTrustMesh.Policy.Kinds;

namespace ZeroTrustMesh.Policy.Tests.ApiSpec;

/// <summary>
/// The compiled subset (<see cref="CompiledSchema"/>) against JsonSchema.Net, its reference: generated schemas within
/// the subset and generated values near them (seeded, so a failure repeats), the bookshop's kind of schema, and the edges
/// where the compiled form must hand over (non-ASCII lengths, numbers beyond decimal, keywords outside the subset).
/// The JSON-Schema-Test-Suite runs through it too (<see cref="JsonSchemaConformanceTests"/>).
/// </summary>
public sealed class CompiledSchemaTests(ITestOutputHelper output)
{
    private static readonly string[] Names = ["id", "name", "tags", "note", "é", "a b", "x"];

    private static readonly string[] Strings = ["", "a", "abc", "ABC", "hello world", "123-45-6789", "12345", "é", "٣٣", "a\nb", "\"q\"", "user@example.com", "xyz"];

    private static readonly string[] Patterns = ["^[a-z]+$", "^\\d{3}-\\d{2}-\\d{4}$", "b", "^\\d+$", "^.{2,5}$"];

    private static readonly decimal[] Numbers = [0m, 1m, -1m, 2.5m, 1.0m, 10m, 100m, 0.01m, 7m, 1e20m, -3.75m];

    [Fact]
    public void The_bookshop_order_schema_is_compiled_and_decides_as_JsonSchema_Net()
    {
        var schema = ApiSchema.Compile(BookOrder.Schema);
        Assert.True(schema.IsCompiled);
        AssertSame(schema, """{"bookId": 7, "quantity": 2, "note": null, "shipping": {"street": "1 Main St", "city": "Springfield"}, "lines": [{"bookId": 1, "quantity": 1, "title": "A"}]}""", expected: true);
        AssertSame(schema, """{"bookId": 7, "quantity": 10, "shipping": {"street": "1 Main St", "city": "Springfield"}, "lines": []}""", expected: false);
        AssertSame(schema, """{"bookId": 7, "quantity": 2, "shipping": {"street": "", "city": "Springfield"}, "lines": []}""", expected: false);
        AssertSame(schema, """{"bookId": 7, "quantity": 2, "shipping": {"street": "1", "city": "S"}, "lines": [], "extra": 1}""", expected: false);
        AssertSame(schema, """{"bookId": 7, "quantity": 2, "shipping": {"street": "1", "city": "S"}, "lines": [{"bookId": -1, "quantity": 1}]}""", expected: false);
        AssertSame(schema, """{"bookId": 7.0, "quantity": 2, "shipping": {"street": "1", "city": "S"}, "lines": []}""", expected: true);
        AssertSame(schema, """{"bookId": 7.5, "quantity": 2, "shipping": {"street": "1", "city": "S"}, "lines": []}""", expected: false);
    }

    [Fact]
    public void Errors_of_an_invalid_value_are_JsonSchema_Net_s_pointers_and_reasons()
    {
        var schema = ApiSchema.Compile(BookOrder.Schema);
        using var value = JsonDocument.Parse("""{"bookId": 0, "quantity": 2, "shipping": {"city": "S"}, "lines": [{"bookId": 1, "quantity": 0}]}""");
        Assert.Equal(SchemaOutcome.Invalid, schema.CheckCompiled(value.RootElement));

        var errors = new List<SchemaError>();
        Assert.False(schema.Validate(value.RootElement, errors));

        Assert.Equal(["/bookId", "/lines/0/quantity", "/shipping"], errors.Select(e => e.Location).Order(StringComparer.Ordinal));
        Assert.Equal(errors, schema.Errors(value.RootElement)); // the sidecar's way to ask: the same list, in the same order
    }

    [Theory]
    [InlineData("""{"type": "string", "maxLength": 2}""", "\"ééé\"", false)] // the compiled form is unsure: JsonSchema.Net decides
    [InlineData("""{"type": "string", "maxLength": 2}""", "\"ab\"", true)]
    [InlineData("""{"patternProperties": {"^x": {"type": "string"}}}""", """{"x1": 1}""", false)] // not compiled at all
    [InlineData("""{"patternProperties": {"^x": {"type": "string"}}}""", """{"x1": "a"}""", true)]
    public void Errors_is_empty_exactly_when_the_value_is_valid_whoever_decides(string json, string value, bool valid)
    {
        var schema = ApiSchema.Compile(json);
        using var document = JsonDocument.Parse(value);
        var errors = schema.Errors(document.RootElement);
        Assert.Equal(valid, errors.Count == 0);
        Assert.Equal(valid, schema.CheckReference(document.RootElement));
    }

    [Theory]
    [InlineData("""{"patternProperties": {"^x": {"type": "string"}}}""")]
    [InlineData("""{"type": "object", "unevaluatedProperties": false}""")]
    [InlineData("""{"if": {"type": "string"}, "then": {"minLength": 2}}""")]
    [InlineData("""{"prefixItems": [{"type": "string"}]}""")]
    [InlineData("""{"$id": "https://example.com/s", "type": "string"}""")]
    [InlineData("""{"$ref": "#/$defs/missing"}""")]
    [InlineData("""{"x-vendor": true, "type": "string"}""")]
    [InlineData("""{"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}""")]
    public void A_schema_using_anything_outside_the_subset_is_left_to_JsonSchema_Net(string json)
    {
        var schema = TryCompile(json);
        Assert.True(schema is null || !schema.IsCompiled, "the schema must not be compiled");
    }

    [Theory]
    [InlineData("""{"type": "string", "maxLength": 2}""", "\"éé\"")] // not plain ASCII: counted by the reference
    [InlineData("""{"type": "string", "minLength": 2}""", "\"a\\nb\"")] // escaped
    [InlineData("""{"type": "integer"}""", "1e400")] // beyond decimal
    [InlineData("""{"minimum": 1}""", "-1e400")]
    public void Values_the_compiled_form_cannot_decide_exactly_go_to_JsonSchema_Net(string json, string value)
    {
        var schema = ApiSchema.Compile(json);
        Assert.True(schema.IsCompiled);
        using var document = JsonDocument.Parse(value);
        Assert.Equal(SchemaOutcome.Unsure, schema.CheckCompiled(document.RootElement));
        Assert.Equal(schema.CheckReference(document.RootElement), schema.Validate(document.RootElement, null));
    }

    [Theory]
    [InlineData("""{"type": "string", "pattern": "^\\d+$"}""", "\"٣٣\"")] // ECMAScript \d is ASCII only
    [InlineData("""{"type": "string", "pattern": "^\\w+$"}""", "\"é\"")]
    [InlineData("""{"type": "string", "format": "email"}""", "\"not an email\"")] // formats are annotations
    [InlineData("""{"enum": [1, "a", null]}""", "1.0")]
    [InlineData("""{"const": {"a": [1, 2]}}""", """{"a": [1.0, 2]}""")]
    [InlineData("""{"type": "array", "uniqueItems": true}""", "[1, 1.0]")]
    [InlineData("""{"multipleOf": 0.01}""", "19.99")]
    [InlineData("""{"properties": {"a\"b": {"type": "string"}}}""", """{"a\u0022b": 1}""")]
    public void Edge_values_are_decided_as_JsonSchema_Net_decides(string json, string value)
    {
        var schema = ApiSchema.Compile(json);
        Assert.True(schema.IsCompiled);
        using var document = JsonDocument.Parse(value);
        var reference = schema.CheckReference(document.RootElement);
        var compiled = schema.CheckCompiled(document.RootElement);
        Assert.Equal(reference ? SchemaOutcome.Valid : SchemaOutcome.Invalid, compiled);
    }

    /// <summary>Generated schemas within the subset and generated values near them: the same verdict as JsonSchema.Net, always.</summary>
    [Fact]
    public void Generated_schemas_and_values_get_JsonSchema_Net_s_verdict()
    {
        var random = new Random(20261206);
        int cases = 0, decided = 0, valid = 0, compiledSchemas = 0;
        var disagreements = new List<string>();
        for (var s = 0; s < 400; s++)
        {
            var defs = new JsonObject { ["Item"] = Schema(random, 2, refs: false), ["Name"] = Schema(random, 1, refs: false) };
            var root = Schema(random, 3, refs: true);
            root["$defs"] = defs;
            var text = root.ToJsonString();
            var schema = ApiSchema.Compile(text);
            if (!schema.IsCompiled)
            {
                disagreements.Add($"not compiled: {text}");
                continue;
            }
            compiledSchemas++;
            for (var v = 0; v < 25; v++)
            {
                var value = Value(random, root, defs, 3);
                using var document = JsonDocument.Parse(value?.ToJsonString() ?? "null");
                var reference = schema.CheckReference(document.RootElement);
                var compiled = schema.CheckCompiled(document.RootElement);
                cases++;
                valid += reference ? 1 : 0;
                if (compiled == SchemaOutcome.Unsure)
                {
                    continue;
                }
                decided++;
                if ((compiled == SchemaOutcome.Valid) != reference || schema.Validate(document.RootElement, []) != reference
                    || (schema.Errors(document.RootElement).Count == 0) != reference)
                {
                    disagreements.Add($"schema {text}\n  value {document.RootElement.GetRawText()}: compiled {compiled}, JsonSchema.Net {(reference ? "valid" : "invalid")}");
                }
            }
        }
        output.WriteLine($"{compiledSchemas} schemas, {cases} values: the compiled form decided {decided} ({valid} valid by JsonSchema.Net in all)");
        Assert.True(disagreements.Count == 0, $"{disagreements.Count} disagreements:\n{string.Join("\n", disagreements.Take(10))}");
        Assert.True(decided > cases * 3 / 4, $"the compiled form decided only {decided} of {cases}");
        Assert.InRange(valid, cases / 10, cases * 9 / 10); // both verdicts are exercised
    }

    private static void AssertSame(ApiSchema schema, string value, bool expected)
    {
        using var document = JsonDocument.Parse(value);
        Assert.Equal(expected, schema.CheckReference(document.RootElement));
        Assert.Equal(expected ? SchemaOutcome.Valid : SchemaOutcome.Invalid, schema.CheckCompiled(document.RootElement));
        Assert.Equal(expected, schema.Validate(document.RootElement, []));
    }

    private static ApiSchema? TryCompile(string json)
    {
        try
        {
            return ApiSchema.Compile(json);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    private static JsonObject Schema(Random random, int depth, bool refs)
    {
        var kind = random.Next(depth <= 0 ? 7 : 13);
        var schema = new JsonObject();
        switch (kind)
        {
            case 0:
                schema["type"] = "string";
                Maybe(random, schema, "minLength", () => random.Next(0, 4));
                Maybe(random, schema, "maxLength", () => random.Next(0, 8));
                Maybe(random, schema, "pattern", () => Patterns[random.Next(Patterns.Length)]);
                Maybe(random, schema, "format", () => "email");
                break;
            case 1 or 2:
                schema["type"] = kind == 1 ? "integer" : "number";
                Maybe(random, schema, "minimum", () => Numbers[random.Next(Numbers.Length)]);
                Maybe(random, schema, "maximum", () => Numbers[random.Next(Numbers.Length)]);
                Maybe(random, schema, "exclusiveMinimum", () => Numbers[random.Next(Numbers.Length)]);
                Maybe(random, schema, "exclusiveMaximum", () => Numbers[random.Next(Numbers.Length)]);
                Maybe(random, schema, "multipleOf", () => new[] { 2m, 0.5m, 0.01m, 3m }[random.Next(4)]);
                break;
            case 3:
                schema["type"] = new JsonArray("string", "null");
                Maybe(random, schema, "maxLength", () => random.Next(0, 6));
                break;
            case 4:
                schema["enum"] = new JsonArray("a", 1, null, 2.5, new JsonArray(1, 2));
                break;
            case 5:
                schema["const"] = random.Next(2) == 0 ? "abc" : new JsonObject { ["a"] = 1 };
                break;
            case 6:
                schema["type"] = random.Next(2) == 0 ? "boolean" : "null";
                break;
            case 7 or 8 or 9:
                schema["type"] = "object";
                var properties = new JsonObject();
                foreach (var name in Names.Where(_ => random.Next(3) == 0))
                {
                    properties[name] = Schema(random, depth - 1, refs);
                }
                schema["properties"] = properties;
                schema["required"] = new JsonArray([.. properties.Select(p => p.Key).Where(_ => random.Next(2) == 0).Select(n => JsonValue.Create(n))]);
                switch (random.Next(4))
                {
                    case 0:
                        schema["additionalProperties"] = false;
                        break;
                    case 1:
                        schema["additionalProperties"] = Schema(random, 0, refs: false);
                        break;
                }
                Maybe(random, schema, "minProperties", () => random.Next(0, 3));
                Maybe(random, schema, "maxProperties", () => random.Next(1, 5));
                break;
            case 10:
                schema["type"] = "array";
                schema["items"] = refs && random.Next(2) == 0 ? new JsonObject { ["$ref"] = "#/$defs/Item" } : Schema(random, depth - 1, refs);
                Maybe(random, schema, "minItems", () => random.Next(0, 3));
                Maybe(random, schema, "maxItems", () => random.Next(1, 5));
                Maybe(random, schema, "uniqueItems", () => random.Next(2) == 0);
                break;
            case 11:
                var combinator = new[] { "allOf", "anyOf", "oneOf" }[random.Next(3)];
                schema[combinator] = new JsonArray(Schema(random, depth - 1, refs), Schema(random, depth - 1, refs));
                break;
            default:
                return refs ? new JsonObject { ["$ref"] = random.Next(2) == 0 ? "#/$defs/Name" : "#/$defs/Item" }
                    : new JsonObject { ["not"] = Schema(random, depth - 1, refs) };
        }
        return schema;
    }

    private static void Maybe(Random random, JsonObject schema, string keyword, Func<JsonNode?> value)
    {
        if (random.Next(3) == 0)
        {
            schema[keyword] = value();
        }
    }

    /// <summary>A value shaped by <paramref name="schema"/> most of the time (so both verdicts occur), anything otherwise.</summary>
    private static JsonNode? Value(Random random, JsonNode? schema, JsonObject defs, int depth)
    {
        if (schema is JsonObject { } reference && reference["$ref"] is JsonValue target && random.Next(5) != 0)
        {
            schema = defs[((string)target!)["#/$defs/".Length..]];
        }
        var type = schema?["type"] switch
        {
            JsonValue single => (string?)single,
            JsonArray types => (string?)types[random.Next(types.Count)],
            _ => null,
        };
        if (random.Next(6) == 0 || depth <= 0)
        {
            type = new[] { "string", "integer", "number", "boolean", "null", "object", "array" }[random.Next(depth <= 0 ? 5 : 7)];
        }
        if (schema?["enum"] is JsonArray values && random.Next(3) != 0)
        {
            return values[random.Next(values.Count)]?.DeepClone();
        }
        if (schema?["const"] is { } constant && random.Next(3) != 0)
        {
            return constant.DeepClone();
        }
        if ((schema?["allOf"] ?? schema?["anyOf"] ?? schema?["oneOf"]) is JsonArray branches)
        {
            return Value(random, branches[random.Next(branches.Count)], defs, depth);
        }
        switch (type)
        {
            case "string":
                return Strings[random.Next(Strings.Length)];
            case "integer":
                return random.Next(4) == 0 ? JsonNode.Parse(new[] { "1.0", "1e2", "-0", "3.000" }[random.Next(4)]) : random.Next(-3, 120);
            case "number":
                return Numbers[random.Next(Numbers.Length)] + (random.Next(3) == 0 ? 0.005m : 0m);
            case "boolean":
                return random.Next(2) == 0;
            case "null":
                return null;
            case "array":
                var array = new JsonArray();
                for (var i = random.Next(0, 5); i > 0; i--)
                {
                    array.Add(Value(random, schema?["items"], defs, depth - 1));
                }
                return array;
            case "object":
                var value = new JsonObject();
                var properties = schema?["properties"] as JsonObject;
                foreach (var name in Names.Where(n => properties?.ContainsKey(n) == true ? random.Next(5) != 0 : random.Next(8) == 0))
                {
                    value[name] = Value(random, properties?[name], defs, depth - 1);
                }
                return value;
            default:
                return random.Next(3) switch { 0 => "x", 1 => 5, _ => new JsonObject() };
        }
    }
}
