using System.Text.Json;
using System.Text.RegularExpressions;

namespace ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

/// <summary>One schema of the response schema document (an object or a boolean): what it declares itself, and the schemas that also apply where it does.</summary>
internal sealed class SchemaNode(int id, bool isFalse)
{
    private bool? _never;

    public int Id { get; } = id;

    /// <summary>The boolean schema <c>false</c>.</summary>
    public bool IsFalse { get; } = isFalse;

    /// <summary><c>writeOnly: true</c>: a value a client may send but a response never carries (a password).</summary>
    public bool WriteOnly { get; set; }

    public Dictionary<string, SchemaNode> Properties { get; } = new(StringComparer.Ordinal);

    public List<(Regex Regex, SchemaNode Schema)> Patterns { get; } = [];

    public SchemaNode? AdditionalProperties { get; set; }

    public SchemaNode? UnevaluatedProperties { get; set; }

    public List<SchemaNode> PrefixItems { get; } = [];

    public SchemaNode? Items { get; set; }

    public SchemaNode? UnevaluatedItems { get; set; }

    /// <summary>Whether a keyword of this schema says which members an object may have.</summary>
    public bool DeclaresMembers { get; set; }

    /// <summary>Whether a keyword of this schema says which elements an array may have.</summary>
    public bool DeclaresElements { get; set; }

    /// <summary>Schemas that apply to the same value: <c>$ref</c>, <c>allOf</c>, <c>anyOf</c>, <c>oneOf</c>, <c>then</c>, <c>else</c>, <c>dependentSchemas</c>.</summary>
    public List<SchemaNode> Applicators { get; } = [];

    /// <summary>Schemas a value must also satisfy (<c>$ref</c>, <c>allOf</c>): if one of them is false, so is this one.</summary>
    public List<SchemaNode> Conjuncts { get; } = [];

    /// <summary>
    /// Whether no response value can satisfy this schema (<c>false</c>, <c>writeOnly: true</c>, or a <c>$ref</c>/<c>allOf</c>
    /// to one): the member it declares is removed.
    /// </summary>
    public bool IsNever()
    {
        if (_never is { } known)
        {
            return known;
        }
        _never = false; // a $ref cycle back here is not a reason to be false
        _never = IsFalse || WriteOnly || Conjuncts.Any(c => c.IsNever());
        return _never.Value;
    }
}

/// <summary>
/// Reads the schemas of one document, each location once (a <c>$ref</c> and the walk reach the same node), collecting
/// every problem with its location.
/// </summary>
internal sealed class SchemaNodes(JsonElement root)
{
    private readonly Dictionary<string, SchemaNode> _byLocation = new(StringComparer.Ordinal);
    private readonly List<string> _errors = [];

    public void ThrowIfErrors()
    {
        if (_errors.Count > 0)
        {
            throw new ArgumentException("response schema: " + string.Join("; ", _errors));
        }
    }

    /// <summary>The schema at <paramref name="location"/> (a JSON Pointer fragment, e.g. <c>#/$defs/User</c>).</summary>
    public SchemaNode At(JsonElement element, string location)
    {
        if (_byLocation.TryGetValue(location, out var existing))
        {
            return existing;
        }
        var node = new SchemaNode(_byLocation.Count, element.ValueKind == JsonValueKind.False);
        _byLocation[location] = node;
        if (element.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            return node;
        }
        if (element.ValueKind != JsonValueKind.Object)
        {
            _errors.Add($"{location}: a schema is an object or a boolean, not {Kind(element)}");
            return node;
        }
        foreach (var keyword in element.EnumerateObject())
        {
            var at = location + "/" + Escape(keyword.Name);
            var value = keyword.Value;
            switch (keyword.Name)
            {
                case "properties":
                    node.DeclaresMembers = true;
                    foreach (var property in Members(value, at))
                    {
                        node.Properties[property.Name] = At(property.Value, at + "/" + Escape(property.Name));
                    }
                    break;
                case "patternProperties":
                    node.DeclaresMembers = true;
                    foreach (var property in Members(value, at))
                    {
                        if (Pattern(property.Name, at) is { } regex)
                        {
                            node.Patterns.Add((regex, At(property.Value, at + "/" + Escape(property.Name))));
                        }
                    }
                    break;
                case "additionalProperties":
                    node.DeclaresMembers = true;
                    node.AdditionalProperties = At(value, at);
                    break;
                case "unevaluatedProperties":
                    node.DeclaresMembers = true;
                    node.UnevaluatedProperties = At(value, at);
                    break;
                case "prefixItems":
                    node.DeclaresElements = true;
                    node.PrefixItems.AddRange(Elements(value, at).Select((item, i) => At(item, $"{at}/{i}")));
                    break;
                case "items" when value.ValueKind == JsonValueKind.Array:
                    _errors.Add($"{at}: an array of schemas is the items of drafts before 2020-12; use prefixItems");
                    break;
                case "items":
                    node.DeclaresElements = true;
                    node.Items = At(value, at);
                    break;
                case "unevaluatedItems":
                    node.DeclaresElements = true;
                    node.UnevaluatedItems = At(value, at);
                    break;
                case "allOf":
                    var all = Elements(value, at).Select((branch, i) => At(branch, $"{at}/{i}")).ToList();
                    node.Applicators.AddRange(all);
                    node.Conjuncts.AddRange(all);
                    break;
                case "anyOf" or "oneOf":
                    node.Applicators.AddRange(Elements(value, at).Select((branch, i) => At(branch, $"{at}/{i}")));
                    break;
                case "then" or "else":
                    node.Applicators.Add(At(value, at));
                    break;
                case "dependentSchemas":
                    node.Applicators.AddRange(Members(value, at).Select(p => At(p.Value, at + "/" + Escape(p.Name))));
                    break;
                case "$ref":
                    if (Reference(value, at) is { } target)
                    {
                        node.Applicators.Add(target);
                        node.Conjuncts.Add(target);
                    }
                    break;
                case "$dynamicRef" or "$recursiveRef":
                    _errors.Add($"{at}: {keyword.Name} is not supported; use $ref to a local definition (#/$defs/...)");
                    break;
                case "writeOnly":
                    node.WriteOnly = value.ValueKind == JsonValueKind.True;
                    break;
                case "$defs" or "definitions":
                    // Read where a $ref leads, not here: a definition nothing refers to does not shape the response.
                    break;
            }
        }
        return node;
    }

    /// <summary>The schema a local <c>$ref</c> (<c>#</c> or a JSON Pointer fragment, percent-encoded as a URI fragment) names.</summary>
    private SchemaNode? Reference(JsonElement value, string at)
    {
        if (value.ValueKind != JsonValueKind.String)
        {
            _errors.Add($"{at}: $ref is a string, not {Kind(value)}");
            return null;
        }
        var reference = value.GetString()!;
        if (reference != "#" && !reference.StartsWith("#/", StringComparison.Ordinal))
        {
            _errors.Add($"{at}: $ref '{reference}' is not a local reference; the schema must be self-contained (#/$defs/...)");
            return null;
        }
        var target = root;
        var location = "#";
        foreach (var raw in reference.Length == 1 ? [] : Uri.UnescapeDataString(reference[2..]).Split('/'))
        {
            var segment = raw.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (target.ValueKind == JsonValueKind.Object && target.TryGetProperty(segment, out var member))
            {
                target = member;
            }
            else if (target.ValueKind == JsonValueKind.Array && int.TryParse(segment, out var index) && index >= 0 && index < target.GetArrayLength())
            {
                target = target[index];
            }
            else
            {
                _errors.Add($"{at}: $ref '{reference}' does not resolve in the document");
                return null;
            }
            location += "/" + Escape(segment);
        }
        return At(target, location);
    }

    private List<JsonProperty> Members(JsonElement value, string at)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            _errors.Add($"{at}: expected an object of schemas, not {Kind(value)}");
            return [];
        }
        return value.EnumerateObject().ToList();
    }

    private List<JsonElement> Elements(JsonElement value, string at)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            _errors.Add($"{at}: expected an array of schemas, not {Kind(value)}");
            return [];
        }
        return value.EnumerateArray().ToList();
    }

    /// <summary>
    /// A <c>patternProperties</c> regular expression (ECMA-262 in JSON Schema; .NET's syntax agrees on what schemas use),
    /// unanchored as JSON Schema says. Matched without backtracking where the pattern allows it: member names come from the app.
    /// </summary>
    private Regex? Pattern(string pattern, string at)
    {
        try
        {
            return new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.NonBacktracking);
        }
        catch (NotSupportedException)
        {
            return new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(10));
        }
        catch (ArgumentException e)
        {
            _errors.Add($"{at}: pattern '{pattern}' is not a regular expression: {e.Message}");
            return null;
        }
    }

    private static string Escape(string segment) => segment.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    private static string Kind(JsonElement element) => element.ValueKind.ToString().ToLowerInvariant();
}
