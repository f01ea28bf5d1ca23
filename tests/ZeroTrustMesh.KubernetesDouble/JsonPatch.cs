using System.Globalization;
using System.Text.Json.Nodes;

namespace ZeroTrustMesh.KubernetesDouble;

/// <summary>A patch document that cannot be read (HTTP 400) or does not apply to its target (HTTP 422).</summary>
public sealed class PatchException(string message, bool malformed) : Exception(message)
{
    /// <summary>The patch itself is not a valid patch document (not just inapplicable).</summary>
    public bool Malformed { get; } = malformed;
}

/// <summary>JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7386) over <see cref="JsonNode"/> trees.</summary>
public static class JsonPatch
{
    /// <summary>Applies an RFC 6902 patch to a copy of <paramref name="document"/>; all or nothing.</summary>
    /// <exception cref="PatchException">The patch is malformed, or an operation does not apply (a failed <c>test</c> included).</exception>
    public static JsonNode? Apply(JsonNode? document, JsonNode? patch)
    {
        if (patch is not JsonArray operations)
        {
            throw new PatchException("a JSON patch is an array of operations", malformed: true);
        }
        var root = document?.DeepClone();
        foreach (var item in operations)
        {
            if (item is not JsonObject operation || Text(operation["op"]) is not { } op || Text(operation["path"]) is not { } path)
            {
                throw new PatchException("each operation needs \"op\" and \"path\"", malformed: true);
            }
            var tokens = Pointer(path);
            switch (op)
            {
                case "add":
                    root = Add(root, tokens, Value(operation), path);
                    break;
                case "remove":
                    root = Remove(root, tokens, path, out _);
                    break;
                case "replace":
                    root = Remove(root, tokens, path, out _);
                    root = Add(root, tokens, Value(operation), path);
                    break;
                case "move":
                case "copy":
                    var from = Text(operation["from"]) ?? throw new PatchException($"{op} needs \"from\"", malformed: true);
                    var fromTokens = Pointer(from);
                    JsonNode? moved;
                    if (op == "move")
                    {
                        if (path.StartsWith(from + "/", StringComparison.Ordinal))
                        {
                            throw new PatchException($"cannot move {from} into its own child {path}", malformed: false);
                        }
                        root = Remove(root, fromTokens, from, out moved);
                    }
                    else
                    {
                        moved = Find(root, fromTokens, from)?.DeepClone();
                    }
                    root = Add(root, tokens, moved, path);
                    break;
                case "test":
                    var actual = Find(root, tokens, path);
                    if (!JsonNode.DeepEquals(actual, Value(operation)))
                    {
                        throw new PatchException($"test failed at {path}: the value is {actual?.ToJsonString() ?? "null"}", malformed: false);
                    }
                    break;
                default:
                    throw new PatchException($"unknown operation '{op}'", malformed: true);
            }
        }
        return root;
    }

    /// <summary>Applies an RFC 7386 merge patch: objects merge, null removes, anything else replaces.</summary>
    public static JsonNode? Merge(JsonNode? target, JsonNode? patch)
    {
        if (patch is not JsonObject patchObject)
        {
            return patch?.DeepClone();
        }
        var result = target is JsonObject targetObject ? (JsonObject)targetObject.DeepClone() : new JsonObject();
        foreach (var (key, value) in patchObject)
        {
            if (value is null)
            {
                result.Remove(key);
            }
            else
            {
                result[key] = Merge(result[key], value);
            }
        }
        return result;
    }

    private static string? Text(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    private static JsonNode? Value(JsonObject operation) =>
        operation.TryGetPropertyValue("value", out var value) ? value?.DeepClone() : throw new PatchException($"{Text(operation["op"])} needs \"value\"", malformed: true);

    private static string[] Pointer(string path)
    {
        if (path.Length == 0)
        {
            return [];
        }
        if (path[0] != '/')
        {
            throw new PatchException($"'{path}' is not a JSON pointer", malformed: true);
        }
        return [.. path[1..].Split('/').Select(t => t.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal))];
    }

    private static JsonNode? Find(JsonNode? root, string[] tokens, string path)
    {
        var node = root;
        foreach (var token in tokens)
        {
            node = node switch
            {
                JsonObject o when o.TryGetPropertyValue(token, out var child) => child,
                JsonArray a when Index(token, a.Count, allowEnd: false) is { } i => a[i],
                _ => throw new PatchException($"{path}: no such path in the object", malformed: false),
            };
        }
        return node;
    }

    private static JsonNode? Add(JsonNode? root, string[] tokens, JsonNode? value, string path)
    {
        if (tokens.Length == 0)
        {
            return value;
        }
        var parent = Find(root, tokens[..^1], path);
        var last = tokens[^1];
        switch (parent)
        {
            case JsonObject o:
                o[last] = value;
                break;
            case JsonArray a:
                var index = Index(last, a.Count, allowEnd: true) ?? throw new PatchException($"{path}: index out of range", malformed: false);
                a.Insert(index, value);
                break;
            default:
                throw new PatchException($"{path}: the parent is not an object or array", malformed: false);
        }
        return root;
    }

    private static JsonNode? Remove(JsonNode? root, string[] tokens, string path, out JsonNode? removed)
    {
        if (tokens.Length == 0)
        {
            removed = root;
            return null;
        }
        var parent = Find(root, tokens[..^1], path);
        var last = tokens[^1];
        switch (parent)
        {
            case JsonObject o when o.TryGetPropertyValue(last, out removed):
                o.Remove(last);
                return root;
            case JsonArray a when Index(last, a.Count, allowEnd: false) is { } i:
                removed = a[i];
                a.RemoveAt(i);
                return root;
            default:
                throw new PatchException($"{path}: no such path in the object", malformed: false);
        }
    }

    private static int? Index(string token, int count, bool allowEnd)
    {
        if (allowEnd && token == "-")
        {
            return count;
        }
        if (token.Length > 1 && token[0] == '0')
        {
            return null;
        }
        return int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && (i < count || (allowEnd && i == count)) ? i : null;
    }
}
