using System.Text.Json.Nodes;

namespace ZeroTrustMesh.Chart.Tests.Infrastructure;

/// <summary>
/// A CRD's <c>openAPIV3Schema</c> as the API server treats it: the rules that make it structural, its conversion to a
/// JSON Schema (2020-12) for validating documents, and a document with every field it declares.
/// </summary>
internal static class CrdSchema
{
    private static readonly HashSet<string> Keywords =
    [
        "type", "format", "title", "description", "properties", "required", "items", "enum", "default",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern",
        "minItems", "maxItems", "minProperties", "maxProperties", "additionalProperties", "allOf", "anyOf", "oneOf", "not",
        "nullable", "example", "externalDocs",
        "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type", "x-kubernetes-map-type", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
    ];

    /// <summary>Keywords apiextensions.k8s.io/v1 refuses in a schema (or in a structural one).</summary>
    private static readonly HashSet<string> Forbidden =
        ["$ref", "$schema", "id", "definitions", "dependencies", "patternProperties", "additionalItems", "uniqueItems"];

    private static readonly string[] Junctors = ["allOf", "anyOf", "oneOf", "not"];

    private static readonly HashSet<string> Types = ["object", "array", "string", "integer", "number", "boolean"];

    /// <summary>Every way <paramref name="root"/> is not a structural schema the API server would accept; empty when it is.</summary>
    public static List<string> StructuralProblems(JsonObject root)
    {
        var problems = new List<string>();
        if ((string?)root["type"] != "object")
        {
            problems.Add("<root>: the root must be type: object");
        }
        Walk(root, "", problems);
        if (root["properties"]?["metadata"] is JsonObject metadata)
        {
            var restricted = metadata["properties"] is JsonObject fields ? fields.Select(f => f.Key).Where(k => k is not "name" and not "generateName") : [];
            foreach (var field in restricted)
            {
                problems.Add($"metadata.{field}: only metadata.name and metadata.generateName may be restricted");
            }
            if (metadata.Any(p => p.Key is not "type" and not "properties" and not "description"))
            {
                problems.Add("metadata: only its type (and restrictions on name/generateName) may be given");
            }
        }
        return problems;
    }

    private static void Walk(JsonObject node, string path, List<string> problems)
    {
        var at = path.Length == 0 ? "<root>" : path;
        foreach (var (key, _) in node)
        {
            if (Forbidden.Contains(key))
            {
                problems.Add($"{at}: '{key}' is not allowed in a CRD schema");
            }
            else if (!Keywords.Contains(key))
            {
                problems.Add($"{at}: '{key}' is not an OpenAPI v3 schema keyword Kubernetes knows");
            }
        }
        var type = (string?)node["type"];
        var open = node["x-kubernetes-int-or-string"]?.GetValue<bool>() == true || node["x-kubernetes-preserve-unknown-fields"]?.GetValue<bool>() == true;
        if (type is null && !open)
        {
            problems.Add($"{at}: no type (structural schemas give every field a type)");
        }
        else if (type is not null && !Types.Contains(type))
        {
            problems.Add($"{at}: unknown type '{type}'");
        }
        if (node["properties"] is not null && node["additionalProperties"] is not null)
        {
            problems.Add($"{at}: properties and additionalProperties are mutually exclusive");
        }
        if (node["properties"] is JsonNode && type != "object" || node["items"] is JsonNode && type != "array")
        {
            problems.Add($"{at}: properties need type object and items type array");
        }
        if (type == "array" && node["items"] is null)
        {
            problems.Add($"{at}: an array needs items");
        }
        if (node["required"] is JsonArray required)
        {
            foreach (var name in required.Select(r => (string)r!))
            {
                if (node["properties"]?[name] is null)
                {
                    problems.Add($"{at}: requires '{name}', which it does not declare");
                }
            }
        }
        if ((string?)node["x-kubernetes-list-type"] == "map")
        {
            var itemRequired = node["items"]?["required"] as JsonArray;
            foreach (var key in (node["x-kubernetes-list-map-keys"] as JsonArray ?? []).Select(k => (string)k!))
            {
                if (itemRequired?.Any(r => (string?)r == key) != true && node["items"]?["properties"]?[key]?["default"] is null)
                {
                    problems.Add($"{at}: list-map key '{key}' must be required or defaulted");
                }
            }
        }
        if (node["default"] is JsonNode value && node["enum"] is JsonArray values && !values.Any(v => JsonNode.DeepEquals(v, value)))
        {
            problems.Add($"{at}: default {value.ToJsonString()} is not one of its enum");
        }
        if (node["properties"] is JsonObject properties)
        {
            foreach (var (name, child) in properties)
            {
                Walk(child as JsonObject ?? [], Join(path, name), problems);
            }
        }
        if (node["items"] is JsonObject items)
        {
            Walk(items, path + "[]", problems);
        }
        if (node["additionalProperties"] is JsonObject additional)
        {
            Walk(additional, path + ".*", problems);
        }
        foreach (var junctor in Junctors)
        {
            foreach (var branch in Branches(node[junctor]))
            {
                CheckJunctorBranch(branch, node, $"{at}.{junctor}", problems);
            }
        }
    }

    /// <summary>Inside allOf/anyOf/oneOf/not only value validations: no type, description, default, nullable, additionalProperties,
    /// and every field they name declared outside too.</summary>
    private static void CheckJunctorBranch(JsonObject branch, JsonObject owner, string at, List<string> problems)
    {
        foreach (var key in new[] { "type", "description", "default", "nullable", "additionalProperties" })
        {
            var intOrString = key == "type" && owner["x-kubernetes-int-or-string"]?.GetValue<bool>() == true;
            if (branch[key] is not null && !intOrString)
            {
                problems.Add($"{at}: '{key}' is not allowed inside a logical junctor");
            }
        }
        foreach (var name in (branch["required"] as JsonArray ?? []).Select(r => (string)r!).Concat(branch["properties"] is JsonObject p ? p.Select(e => e.Key) : []))
        {
            if (owner["properties"]?[name] is null)
            {
                problems.Add($"{at}: names '{name}', which is not declared outside the junctor");
            }
        }
    }

    private static IEnumerable<JsonObject> Branches(JsonNode? junctor) => junctor switch
    {
        JsonArray array => array.OfType<JsonObject>(),
        JsonObject single => [single],
        _ => [],
    };

    private static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";

    /// <summary>
    /// The schema as a JSON Schema (2020-12) that refuses what the API server would prune or refuse: an object with
    /// declared properties gets <c>additionalProperties: false</c> (a field the CRD does not declare would be silently
    /// dropped, which for a policy is an error). Not carried: <c>x-kubernetes-validations</c> (CEL; the chart's CRDs use
    /// none) and formats other than date-time.
    /// </summary>
    public static JsonObject ToJsonSchema(JsonObject crd)
    {
        var schema = Convert(crd);
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema";
        return schema;
    }

    private static JsonObject Convert(JsonObject node)
    {
        var schema = new JsonObject();
        var type = (string?)node["type"];
        if (node["x-kubernetes-int-or-string"]?.GetValue<bool>() == true)
        {
            schema["type"] = new JsonArray("integer", "string");
        }
        else if (type is not null)
        {
            schema["type"] = node["nullable"]?.GetValue<bool>() == true ? new JsonArray(type, "null") : type;
        }
        foreach (var key in new[] { "required", "enum", "minimum", "maximum", "multipleOf", "minLength", "maxLength", "pattern", "minItems", "maxItems", "minProperties", "maxProperties" })
        {
            if (node[key] is JsonNode value)
            {
                schema[key] = value.DeepClone();
            }
        }
        // OpenAPI v3.0's boolean exclusiveMinimum/Maximum become 2020-12's numeric ones.
        if (node["exclusiveMinimum"]?.GetValue<bool>() == true)
        {
            schema.Remove("minimum");
            schema["exclusiveMinimum"] = node["minimum"]!.DeepClone();
        }
        if (node["exclusiveMaximum"]?.GetValue<bool>() == true)
        {
            schema.Remove("maximum");
            schema["exclusiveMaximum"] = node["maximum"]!.DeepClone();
        }
        if ((string?)node["format"] == "date-time")
        {
            schema["format"] = "date-time";
        }
        if (node["properties"] is JsonObject properties)
        {
            schema["properties"] = new JsonObject(properties.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)Convert((JsonObject)p.Value!))));
            if (node["x-kubernetes-preserve-unknown-fields"]?.GetValue<bool>() != true)
            {
                schema["additionalProperties"] = false;
            }
        }
        switch (node["additionalProperties"])
        {
            case JsonObject additional:
                schema["additionalProperties"] = Convert(additional);
                break;
            case JsonValue flag:
                schema["additionalProperties"] = flag.GetValue<bool>();
                break;
        }
        if (node["items"] is JsonObject items)
        {
            schema["items"] = Convert(items);
        }
        foreach (var junctor in new[] { "allOf", "anyOf", "oneOf" })
        {
            if (node[junctor] is JsonArray branches && node["x-kubernetes-int-or-string"]?.GetValue<bool>() != true)
            {
                schema[junctor] = new JsonArray([.. branches.Select(b => (JsonNode?)Convert((JsonObject)b!))]);
            }
        }
        if (node["not"] is JsonObject not)
        {
            schema["not"] = Convert(not);
        }
        return schema;
    }

    /// <summary>
    /// A document that sets every field the schema declares (the first enum value, the example, the minimum, one array item), to check
    /// that the model's reader knows each of them. Junctors are ignored (such a document may set fields that exclude each other).
    /// </summary>
    public static JsonNode? Maximal(JsonObject node, string path = "")
    {
        if (node["enum"] is JsonArray values)
        {
            return values[0]!.DeepClone();
        }
        if (node["example"] is { } example)
        {
            return example.DeepClone(); // a field with a pattern says what fits it
        }
        return (string?)node["type"] switch
        {
            "object" when node["properties"] is JsonObject properties =>
                new JsonObject(properties.Select(p => KeyValuePair.Create(p.Key, Maximal((JsonObject)p.Value!, Join(path, p.Key))))),
            "object" => new JsonObject(),
            "array" => new JsonArray(Maximal((JsonObject)node["items"]!, path + "[]")),
            "integer" or "number" => JsonValue.Create(node["minimum"]?.GetValue<long>() ?? 1),
            "boolean" => JsonValue.Create(true),
            "string" => JsonValue.Create("x"),
            var other => throw new InvalidOperationException($"{path}: no value for type {other}"),
        };
    }
}
