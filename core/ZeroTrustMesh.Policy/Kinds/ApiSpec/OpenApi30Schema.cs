using System.Text.Json.Nodes;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// OpenAPI 3.0's Schema Object dialect (an extended subset of JSON Schema draft 4/5) rewritten as JSON Schema 2020-12,
/// so one validator serves 3.0 and 3.1 documents:
/// <list type="bullet">
/// <item><c>nullable: true</c> adds <c>"null"</c> to <c>type</c> (and to <c>enum</c> when there is one); without
/// <c>type</c> it says nothing (OpenAPI 3.0.3).</item>
/// <item>boolean <c>exclusiveMinimum</c>/<c>exclusiveMaximum</c> (draft 4) become the 2020-12 numbers: <c>true</c>
/// moves <c>minimum</c>/<c>maximum</c> into them, <c>false</c> is dropped.</item>
/// <item>keywords next to a <c>$ref</c> are ignored in 3.0 (as in draft 4), so they are dropped.</item>
/// </list>
/// Pure JSON to JSON on a copy; everything else passes as written.
/// </summary>
public static class OpenApi30Schema
{
    private static readonly string[] SchemaMaps = ["properties", "patternProperties", "definitions", "$defs"];
    private static readonly string[] SchemaLists = ["allOf", "anyOf", "oneOf", "items"];
    private static readonly string[] SchemaValues = ["additionalProperties", "items", "not", "additionalItems"];

    public static JsonNode? ToDraft202012(JsonNode? schema) => Adapt(schema?.DeepClone());

    /// <summary>Rewrites <paramref name="node"/> in place (it is a copy) and returns it.</summary>
    private static JsonNode? Adapt(JsonNode? node)
    {
        if (node is not JsonObject schema)
        {
            return node;
        }
        if (schema.ContainsKey("$ref"))
        {
            foreach (var name in schema.Select(p => p.Key).Where(k => k != "$ref").ToList())
            {
                schema.Remove(name);
            }
            return schema;
        }
        if (schema["nullable"] is JsonValue nullable && nullable.TryGetValue<bool>(out var isNullable))
        {
            schema.Remove("nullable");
            if (isNullable && schema["type"] is { } type)
            {
                schema["type"] = type is JsonArray types
                    ? new JsonArray([.. types.Select(t => t?.DeepClone()), JsonValue.Create("null")])
                    : new JsonArray(type.DeepClone(), JsonValue.Create("null"));
                if (schema["enum"] is JsonArray values && !values.Any(v => v is null))
                {
                    values.Add(null);
                }
            }
        }
        Exclusive(schema, "exclusiveMinimum", "minimum");
        Exclusive(schema, "exclusiveMaximum", "maximum");
        foreach (var map in SchemaMaps)
        {
            if (schema[map] is JsonObject members)
            {
                foreach (var (_, member) in members)
                {
                    Adapt(member);
                }
            }
        }
        foreach (var list in SchemaLists)
        {
            if (schema[list] is JsonArray items)
            {
                foreach (var item in items)
                {
                    Adapt(item);
                }
            }
        }
        foreach (var value in SchemaValues)
        {
            if (schema[value] is JsonObject child)
            {
                Adapt(child);
            }
        }
        return schema;
    }

    private static void Exclusive(JsonObject schema, string exclusive, string bound)
    {
        if (schema[exclusive] is JsonValue flag && flag.TryGetValue<bool>(out var on))
        {
            schema.Remove(exclusive);
            if (on && schema[bound] is { } value)
            {
                schema.Remove(bound);
                schema[exclusive] = value;
            }
        }
    }
}
