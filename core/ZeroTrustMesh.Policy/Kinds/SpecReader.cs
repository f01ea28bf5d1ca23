using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// Reads a resource from a neutral node tree (<see cref="JsonNode"/>): YAML documents are converted to one (every scalar a
/// string), Kubernetes custom resources arrive as one (numbers and booleans typed), and both read the same. Every helper
/// reports a wrong shape or an unknown key at its path and returns a neutral value, so one pass finds every error.
/// </summary>
public sealed class SpecReader(ErrorSink errors)
{
    public ErrorSink Errors => errors;

    public static JsonNode? Child(JsonObject map, string key) => map.TryGetPropertyValue(key, out var value) ? value : null;

    /// <summary>Whether <paramref name="key"/> is written at all (possibly as null).</summary>
    public static bool Has(JsonObject map, string key) => map.ContainsKey(key);

    public static string Join(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

    public JsonObject? Mapping(JsonNode? node, string path, bool required = false)
    {
        if (node is null)
        {
            if (required)
            {
                errors.Add(path, $"'{(path.Length == 0 ? "document" : path)}' is required");
            }
            return null;
        }
        if (node is JsonObject map)
        {
            return map;
        }
        errors.Add(path, path.Length == 0 ? "a document must be a mapping with apiVersion, kind, metadata and spec" : "expected a mapping (key: value)");
        return null;
    }

    /// <summary>Reports every key of <paramref name="map"/> that is not in <paramref name="allowed"/>, with a hint for a wrong case.</summary>
    public void Keys(JsonObject map, string path, params string[] allowed)
    {
        foreach (var (name, _) in map)
        {
            if (Array.IndexOf(allowed, name) < 0)
            {
                var hint = allowed.FirstOrDefault(a => string.Equals(a, name, StringComparison.OrdinalIgnoreCase));
                errors.Add(Join(path, name), hint is not null
                    ? $"unknown field '{name}'; did you mean '{hint}'?"
                    : $"unknown field '{name}'; expected {string.Join(", ", allowed)}");
            }
        }
    }

    public string? Text(JsonObject map, string key, string path) => Scalar(Child(map, key), Join(path, key));

    /// <summary>A scalar's text: a string as it is, a number or boolean as written (so <c>8080</c> and <c>"8080"</c> read alike).</summary>
    public string? Scalar(JsonNode? node, string path)
    {
        switch (node)
        {
            case null:
                return null;
            case JsonValue value when value.GetValueKind() == JsonValueKind.String:
                return value.GetValue<string>();
            case JsonValue value:
                return value.ToJsonString();
            default:
                errors.Add(path, "expected a single value, not a list or mapping");
                return null;
        }
    }

    public bool? Bool(JsonObject map, string key, string path)
    {
        var text = Text(map, key, path);
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

    public int? Number(JsonNode? node, string path)
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

    public ImmutableArray<string> Strings(JsonObject map, string key, string path) =>
        List(map, key, path, (node, p) => Scalar(node, p) ?? "");

    public ImmutableArray<T> List<T>(JsonObject map, string key, string path, Func<JsonNode?, string, T> read)
    {
        var node = Child(map, key);
        path = Join(path, key);
        if (node is null)
        {
            return [];
        }
        if (node is not JsonArray sequence)
        {
            errors.Add(path, "expected a list");
            return [];
        }
        var items = ImmutableArray.CreateBuilder<T>(sequence.Count);
        for (var i = 0; i < sequence.Count; i++)
        {
            items.Add(read(sequence[i], $"{path}[{i}]"));
        }
        return items.MoveToImmutable();
    }

    public ImmutableDictionary<string, string> StringMap(JsonObject map, string key, string path)
    {
        path = Join(path, key);
        if (Mapping(Child(map, key), path) is not { } node)
        {
            return ImmutableDictionary<string, string>.Empty;
        }
        var builder = ImmutableDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in node)
        {
            builder[name] = Scalar(value, Join(path, name)) ?? "";
        }
        return builder.ToImmutable();
    }

    /// <summary><c>spec.selector: {service: NAME}</c>, the same for every kind.</summary>
    public WorkloadSelector? Selector(JsonObject spec)
    {
        if (Mapping(Child(spec, "selector"), "spec.selector") is not { } map)
        {
            return null;
        }
        Keys(map, "spec.selector", "service");
        var service = Text(map, "service", "spec.selector");
        if (service is null)
        {
            errors.Add("spec.selector.service", "a selector needs 'service' (omit the selector to apply to every workload of the namespace)");
        }
        return new WorkloadSelector(service ?? "");
    }
}

/// <summary>Reads whole documents: <c>apiVersion</c>, <c>kind</c> (which picks the <see cref="PolicyKind"/>), <c>metadata</c>, then the kind's <c>spec</c>.</summary>
public static class ResourceReader
{
    /// <summary>Reads one document; null when it has no known kind or is not a mapping (the error is reported).</summary>
    public static PolicyResource? Read(PolicyKinds kinds, JsonNode? root, ErrorSink errors)
    {
        var reader = new SpecReader(errors);
        if (reader.Mapping(root, "") is not { } map)
        {
            return null;
        }
        reader.Keys(map, "", "apiVersion", "kind", "metadata", "spec");
        var apiVersion = reader.Text(map, "apiVersion", "");
        if (apiVersion is null)
        {
            errors.Add("apiVersion", $"apiVersion is required: '{PolicyResource.ApiVersion}'");
        }
        else if (apiVersion != PolicyResource.ApiVersion)
        {
            errors.Add("apiVersion", $"unknown apiVersion '{apiVersion}'; expected '{PolicyResource.ApiVersion}'");
        }
        var name = reader.Text(map, "kind", "");
        if (name is null || !kinds.TryGet(name, out var kind))
        {
            errors.Add("kind", name is null
                ? $"kind is required: one of {kinds.Names}"
                : $"unknown kind '{name}'; expected one of {kinds.Names}");
            return null;
        }
        var metadata = ReadMetadata(reader, SpecReader.Child(map, "metadata"));
        var spec = reader.Mapping(SpecReader.Child(map, "spec"), "spec", required: kind.RequiresSpec);
        return kind.Read(metadata, spec, reader);
    }

    private static ResourceMetadata ReadMetadata(SpecReader reader, JsonNode? node)
    {
        if (reader.Mapping(node, "metadata", required: true) is not { } map)
        {
            return new ResourceMetadata("", ResourceMetadata.DefaultNamespace);
        }
        reader.Keys(map, "metadata", "name", "namespace", "labels", "annotations");
        return new ResourceMetadata(reader.Text(map, "name", "metadata") ?? "", reader.Text(map, "namespace", "metadata") ?? ResourceMetadata.DefaultNamespace)
        {
            Labels = reader.StringMap(map, "labels", "metadata"),
            Annotations = reader.StringMap(map, "annotations", "metadata"),
        };
    }
}

/// <summary>
/// Writes whole documents as canonical JSON: <c>apiVersion</c>, <c>kind</c>, <c>metadata</c>, then the kind's <c>spec</c>;
/// numbers as numbers, and nothing that is absent or empty. What <see cref="ResourceReader"/> reads back.
/// </summary>
public static class ResourceWriter
{
    public static byte[] Write(PolicyKind kind, PolicyResource resource)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("apiVersion", PolicyResource.ApiVersion);
            json.WriteString("kind", kind.Name);
            json.WriteStartObject("metadata");
            json.WriteString("name", resource.Metadata.Name);
            json.WriteString("namespace", resource.Metadata.Namespace);
            Map(json, "labels", resource.Metadata.Labels);
            Map(json, "annotations", resource.Metadata.Annotations);
            json.WriteEndObject();
            json.WritePropertyName("spec");
            json.WriteStartObject();
            kind.WriteSpec(resource, json);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary><c>selector: {service: …}</c> when the resource has one.</summary>
    public static void Selector(Utf8JsonWriter json, WorkloadSelector? selector)
    {
        if (selector is not null)
        {
            json.WriteStartObject("selector");
            json.WriteString("service", selector.Service);
            json.WriteEndObject();
        }
    }

    /// <summary>A list of strings, left out when empty.</summary>
    public static void Strings(Utf8JsonWriter json, string name, ImmutableArray<string> values)
    {
        if (values.IsDefaultOrEmpty)
        {
            return;
        }
        json.WriteStartArray(name);
        foreach (var value in values)
        {
            json.WriteStringValue(value);
        }
        json.WriteEndArray();
    }

    /// <summary>A list of objects, each written by <paramref name="write"/> inside its braces; left out when empty.</summary>
    public static void Objects<T>(Utf8JsonWriter json, string name, ImmutableArray<T> items, Action<Utf8JsonWriter, T> write)
    {
        if (items.IsDefaultOrEmpty)
        {
            return;
        }
        json.WriteStartArray(name);
        foreach (var item in items)
        {
            json.WriteStartObject();
            write(json, item);
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }

    /// <summary>A string property, left out when null.</summary>
    public static void Optional(Utf8JsonWriter json, string name, string? value)
    {
        if (value is not null)
        {
            json.WriteString(name, value);
        }
    }

    private static void Map(Utf8JsonWriter json, string name, ImmutableDictionary<string, string> values)
    {
        if (values.IsEmpty)
        {
            return;
        }
        json.WriteStartObject(name);
        foreach (var (key, value) in values.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            json.WriteString(key, value);
        }
        json.WriteEndObject();
    }
}
