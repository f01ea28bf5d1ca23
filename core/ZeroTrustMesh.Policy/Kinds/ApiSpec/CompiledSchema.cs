using System.Buffers;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>What <see cref="CompiledSchema"/> found: a verdict, or that it cannot say and JsonSchema.Net must.</summary>
internal enum SchemaOutcome
{
    Valid,
    Invalid,

    /// <summary>A value the compiled form does not decide exactly (a number beyond <see cref="decimal"/>, the length of a
    /// string that is not plain ASCII, a reference loop): the caller asks the reference validator.</summary>
    Unsure,
}

/// <summary>
/// The common keyword subset of JSON Schema 2020-12 compiled into a tree that checks a <see cref="JsonElement"/> without
/// allocating: <c>type</c>, <c>enum</c>, <c>const</c>, the numeric bounds and <c>multipleOf</c>, string lengths and
/// <c>pattern</c>, <c>items</c> (a schema), <c>minItems</c>/<c>maxItems</c>/<c>uniqueItems</c>, <c>properties</c>,
/// <c>required</c>, <c>additionalProperties</c>, <c>minProperties</c>/<c>maxProperties</c>, <c>allOf</c>/<c>anyOf</c>/
/// <c>oneOf</c>/<c>not</c>, boolean schemas, and <c>$ref</c> to <c>#</c> or <c>#/$defs/…</c> (<c>#/definitions/…</c>);
/// annotations (<c>title</c>, <c>format</c>, <c>default</c>, …) are ignored, as 2020-12 says.
/// A schema that uses any other keyword (or one of these in a form outside the subset) is not compiled at all
/// (<see cref="TryCompile"/> gives null) and JsonSchema.Net evaluates it as before. JsonSchema.Net stays the reference:
/// the compiled form only decides the verdict; the list of errors of an invalid value always comes from JsonSchema.Net,
/// so its pointers and reasons are the ones users already see. Immutable and thread-safe once built.
/// </summary>
internal sealed class CompiledSchema
{
    /// <summary>Schemas entered through <c>$ref</c> without descending into the value; beyond it, a loop: unsure.</summary>
    private const int MaxRefChain = 64;

    private const string Draft202012 = "https://json-schema.org/draft/2020-12/schema";

    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "$schema", "$comment", "$defs", "definitions", "title", "description", "default", "examples", "example", "format",
        "deprecated", "readOnly", "writeOnly", "contentMediaType", "contentEncoding",
    };

    private bool? _always;
    private JsonTypes _types;
    private Member[] _properties = [];
    private byte[][] _required = [];
    private CompiledSchema? _additional;
    private CompiledSchema? _items;
    private JsonElement[]? _enum;
    private JsonElement? _const;
    private decimal? _minimum, _maximum, _exclusiveMinimum, _exclusiveMaximum, _multipleOf;
    private long? _minLength, _maxLength, _minItems, _maxItems, _minProperties, _maxProperties;
    private bool _uniqueItems;
    private Regex? _pattern;
    private CompiledSchema? _ref;
    private CompiledSchema[]? _allOf, _anyOf, _oneOf;
    private CompiledSchema? _not;

    private CompiledSchema()
    {
    }

    /// <summary>The compiled form of <paramref name="root"/> (a whole, self-contained schema); null when it uses anything outside the subset.</summary>
    public static CompiledSchema? TryCompile(JsonElement root)
    {
        if (!SelfContained(root))
        {
            return null;
        }
        var builder = new Builder(root.Clone());
        return builder.Compile(builder.Root);
    }

    /// <summary>Checks <paramref name="instance"/>; <see cref="SchemaOutcome.Unsure"/> where the reference validator must decide.</summary>
    public SchemaOutcome Check(JsonElement instance) => Check(instance, 0);

    private SchemaOutcome Check(JsonElement value, int refChain)
    {
        if (_always is { } always)
        {
            return always ? SchemaOutcome.Valid : SchemaOutcome.Invalid;
        }
        var outcome = SchemaOutcome.Valid;
        if (_ref is not null)
        {
            if (refChain >= MaxRefChain)
            {
                return SchemaOutcome.Unsure;
            }
            if (!And(ref outcome, _ref.Check(value, refChain + 1)))
            {
                return SchemaOutcome.Invalid;
            }
        }
        if (value.ValueKind == JsonValueKind.Number && !value.TryGetDecimal(out _) && _types != JsonTypes.None)
        {
            // Beyond decimal (1e400): whether it is an integer is the reference validator's to say.
            return SchemaOutcome.Unsure;
        }
        if (_types != JsonTypes.None && !HasType(value))
        {
            return SchemaOutcome.Invalid;
        }
        if (_const is { } constant && !JsonElement.DeepEquals(value, constant))
        {
            return SchemaOutcome.Invalid;
        }
        if (_enum is { } values && !InEnum(values, value))
        {
            return SchemaOutcome.Invalid;
        }
        var own = value.ValueKind switch
        {
            JsonValueKind.Number => CheckNumber(value),
            JsonValueKind.String => CheckString(value),
            JsonValueKind.Array => CheckArray(value),
            JsonValueKind.Object => CheckObject(value),
            _ => SchemaOutcome.Valid,
        };
        if (!And(ref outcome, own) || !Combinators(ref outcome, value, refChain))
        {
            return SchemaOutcome.Invalid;
        }
        return outcome;
    }

    /// <summary>Conjunction: false (stop) on a definite failure; an unsure part makes the whole unsure.</summary>
    private static bool And(ref SchemaOutcome outcome, SchemaOutcome part)
    {
        if (part == SchemaOutcome.Invalid)
        {
            return false;
        }
        if (part == SchemaOutcome.Unsure)
        {
            outcome = SchemaOutcome.Unsure;
        }
        return true;
    }

    private bool Combinators(ref SchemaOutcome outcome, JsonElement value, int refChain)
    {
        if (_allOf is { } all)
        {
            foreach (var schema in all)
            {
                if (!And(ref outcome, schema.Check(value, refChain)))
                {
                    return false;
                }
            }
        }
        if (_anyOf is { } any)
        {
            var result = SchemaOutcome.Invalid;
            foreach (var schema in any)
            {
                var one = schema.Check(value, refChain);
                if (one == SchemaOutcome.Valid)
                {
                    result = SchemaOutcome.Valid;
                    break;
                }
                if (one == SchemaOutcome.Unsure)
                {
                    result = SchemaOutcome.Unsure;
                }
            }
            if (!And(ref outcome, result))
            {
                return false;
            }
        }
        if (_oneOf is { } oneOf)
        {
            int valid = 0, unsure = 0;
            foreach (var schema in oneOf)
            {
                switch (schema.Check(value, refChain))
                {
                    case SchemaOutcome.Valid:
                        valid++;
                        break;
                    case SchemaOutcome.Unsure:
                        unsure++;
                        break;
                }
            }
            var result = valid > 1 || (valid + unsure == 0) ? SchemaOutcome.Invalid
                : unsure > 0 ? SchemaOutcome.Unsure
                : SchemaOutcome.Valid;
            if (!And(ref outcome, result))
            {
                return false;
            }
        }
        if (_not is { } not)
        {
            var inner = not.Check(value, refChain);
            if (!And(ref outcome, inner switch
            {
                SchemaOutcome.Valid => SchemaOutcome.Invalid,
                SchemaOutcome.Invalid => SchemaOutcome.Valid,
                _ => SchemaOutcome.Unsure,
            }))
            {
                return false;
            }
        }
        return true;
    }

    private bool HasType(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => (_types & JsonTypes.Object) != 0,
        JsonValueKind.Array => (_types & JsonTypes.Array) != 0,
        JsonValueKind.String => (_types & JsonTypes.String) != 0,
        JsonValueKind.True or JsonValueKind.False => (_types & JsonTypes.Boolean) != 0,
        JsonValueKind.Null => (_types & JsonTypes.Null) != 0,
        JsonValueKind.Number => (_types & JsonTypes.Number) != 0 || ((_types & JsonTypes.Integer) != 0 && IsInteger(value)),
        _ => false,
    };

    /// <summary>An integer is a number with no fraction (<c>1.0</c> is one).</summary>
    private static bool IsInteger(JsonElement value) => value.TryGetDecimal(out var number) && number == decimal.Truncate(number);

    private static bool InEnum(JsonElement[] values, JsonElement value)
    {
        foreach (var candidate in values)
        {
            if (JsonElement.DeepEquals(value, candidate))
            {
                return true;
            }
        }
        return false;
    }

    private SchemaOutcome CheckNumber(JsonElement value)
    {
        if (_minimum is null && _maximum is null && _exclusiveMinimum is null && _exclusiveMaximum is null && _multipleOf is null)
        {
            return SchemaOutcome.Valid;
        }
        if (!value.TryGetDecimal(out var number))
        {
            return SchemaOutcome.Unsure;
        }
        if (number < _minimum || number > _maximum || number <= _exclusiveMinimum || number >= _exclusiveMaximum)
        {
            return SchemaOutcome.Invalid;
        }
        if (_multipleOf is { } divisor)
        {
            try
            {
                return number % divisor == 0 ? SchemaOutcome.Valid : SchemaOutcome.Invalid;
            }
            catch (OverflowException)
            {
                return SchemaOutcome.Unsure;
            }
        }
        return SchemaOutcome.Valid;
    }

    private SchemaOutcome CheckString(JsonElement value)
    {
        if (_minLength is null && _maxLength is null && _pattern is null)
        {
            return SchemaOutcome.Valid;
        }
        var raw = JsonMarshal.GetRawUtf8Value(value);
        if (raw.Length >= 2 && raw[0] == (byte)'"')
        {
            raw = raw[1..^1];
        }
        var escaped = raw.IndexOf((byte)'\\') >= 0;
        if (_minLength is not null || _maxLength is not null)
        {
            // Plain ASCII: one byte is one character, whichever way a length is counted (code points, UTF-16 units,
            // text elements; a CR LF pair is only ever escaped). Anything else is the reference validator's to count.
            if (escaped || !Ascii.IsValid(raw))
            {
                return SchemaOutcome.Unsure;
            }
            if (raw.Length < _minLength || raw.Length > _maxLength)
            {
                return SchemaOutcome.Invalid;
            }
        }
        if (_pattern is { } pattern)
        {
            if (escaped)
            {
                return pattern.IsMatch(value.GetString()!) ? SchemaOutcome.Valid : SchemaOutcome.Invalid;
            }
            char[]? rented = null;
            var chars = raw.Length <= 256 ? stackalloc char[256] : (rented = ArrayPool<char>.Shared.Rent(raw.Length));
            try
            {
                var text = chars[..Encoding.UTF8.GetChars(raw, chars)];
                return pattern.IsMatch(text) ? SchemaOutcome.Valid : SchemaOutcome.Invalid;
            }
            finally
            {
                if (rented is not null)
                {
                    ArrayPool<char>.Shared.Return(rented);
                }
            }
        }
        return SchemaOutcome.Valid;
    }

    private SchemaOutcome CheckArray(JsonElement value)
    {
        var length = value.GetArrayLength();
        if (length < _minItems || length > _maxItems)
        {
            return SchemaOutcome.Invalid;
        }
        if (_uniqueItems)
        {
            for (var i = 1; i < length; i++)
            {
                for (var j = 0; j < i; j++)
                {
                    if (JsonElement.DeepEquals(value[i], value[j]))
                    {
                        return SchemaOutcome.Invalid;
                    }
                }
            }
        }
        var outcome = SchemaOutcome.Valid;
        if (_items is { } items)
        {
            foreach (var item in value.EnumerateArray())
            {
                if (!And(ref outcome, items.Check(item, 0)))
                {
                    return SchemaOutcome.Invalid;
                }
            }
        }
        return outcome;
    }

    private SchemaOutcome CheckObject(JsonElement value)
    {
        if (_minProperties is not null || _maxProperties is not null)
        {
            var count = 0;
            foreach (var _ in value.EnumerateObject())
            {
                count++;
            }
            if (count < _minProperties || count > _maxProperties)
            {
                return SchemaOutcome.Invalid;
            }
        }
        foreach (var name in _required)
        {
            if (!value.TryGetProperty(name, out _))
            {
                return SchemaOutcome.Invalid;
            }
        }
        if (_properties.Length == 0 && _additional is null)
        {
            return SchemaOutcome.Valid;
        }
        var outcome = SchemaOutcome.Valid;
        foreach (var property in value.EnumerateObject())
        {
            var schema = Declared(property) ?? _additional;
            if (schema is not null && !And(ref outcome, schema.Check(property.Value, 0)))
            {
                return SchemaOutcome.Invalid;
            }
        }
        return outcome;
    }

    /// <summary>The schema <c>properties</c> gives the member; null when it declares none.</summary>
    private CompiledSchema? Declared(JsonProperty property)
    {
        if (_properties.Length == 0)
        {
            return null;
        }
        var raw = JsonMarshal.GetRawUtf8PropertyName(property);
        var escaped = raw.IndexOf((byte)'\\') >= 0;
        foreach (var member in _properties)
        {
            if (escaped ? property.NameEquals(member.Utf8Name) : raw.SequenceEqual(member.Utf8Name))
            {
                return member.Schema;
            }
        }
        return null;
    }

    /// <summary>No <c>$id</c>, <c>$anchor</c> or dynamic reference anywhere: every <c>$ref</c> is a pointer into this document.</summary>
    private static bool SelfContained(JsonElement schema)
    {
        switch (schema.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in schema.EnumerateObject())
                {
                    if (property.NameEquals("$id") || property.NameEquals("$anchor") || property.NameEquals("$dynamicRef")
                        || property.NameEquals("$dynamicAnchor") || property.NameEquals("$recursiveRef") || property.NameEquals("$recursiveAnchor")
                        || property.NameEquals("$vocabulary") || !SelfContained(property.Value))
                    {
                        return false;
                    }
                }
                return true;
            case JsonValueKind.Array:
                foreach (var item in schema.EnumerateArray())
                {
                    if (!SelfContained(item))
                    {
                        return false;
                    }
                }
                return true;
            default:
                return true;
        }
    }

    [Flags]
    private enum JsonTypes
    {
        None = 0,
        Object = 1,
        Array = 2,
        String = 4,
        Number = 8,
        Integer = 16,
        Boolean = 32,
        Null = 64,
    }

    private readonly record struct Member(byte[] Utf8Name, CompiledSchema Schema);

    /// <summary>Builds the tree; each <c>$ref</c> target is compiled once (so recursive schemas are finite), or the whole compile gives up.</summary>
    private sealed class Builder(JsonElement root)
    {
        private readonly Dictionary<string, CompiledSchema> _targets = new(StringComparer.Ordinal);

        public JsonElement Root => root;

        public CompiledSchema? Compile(JsonElement schema)
        {
            var compiled = new CompiledSchema();
            return Fill(compiled, schema) ? compiled : null;
        }

        private bool Fill(CompiledSchema compiled, JsonElement schema)
        {
            switch (schema.ValueKind)
            {
                case JsonValueKind.True:
                case JsonValueKind.False:
                    compiled._always = schema.ValueKind == JsonValueKind.True;
                    return true;
                case JsonValueKind.Object:
                    break;
                default:
                    return false;
            }
            foreach (var keyword in schema.EnumerateObject())
            {
                if (!Keyword(compiled, keyword.Name, keyword.Value))
                {
                    return false;
                }
            }
            return true;
        }

        private bool Keyword(CompiledSchema compiled, string name, JsonElement value)
        {
            switch (name)
            {
                case "$schema":
                    return value.ValueKind == JsonValueKind.String && value.GetString()!.TrimEnd('#') == Draft202012;
                case var annotation when Annotations.Contains(annotation):
                    return true;
                case "$ref":
                    return value.ValueKind == JsonValueKind.String && (compiled._ref = Target(value.GetString()!)) is not null;
                case "type":
                    return Types(value, out compiled._types);
                case "enum":
                    if (value.ValueKind != JsonValueKind.Array)
                    {
                        return false;
                    }
                    compiled._enum = [.. value.EnumerateArray()];
                    return true;
                case "const":
                    compiled._const = value;
                    return true;
                case "minimum":
                    return Number(value, out compiled._minimum);
                case "maximum":
                    return Number(value, out compiled._maximum);
                case "exclusiveMinimum":
                    return Number(value, out compiled._exclusiveMinimum);
                case "exclusiveMaximum":
                    return Number(value, out compiled._exclusiveMaximum);
                case "multipleOf":
                    return Number(value, out compiled._multipleOf) && compiled._multipleOf > 0;
                case "minLength":
                    return Count(value, out compiled._minLength);
                case "maxLength":
                    return Count(value, out compiled._maxLength);
                case "minItems":
                    return Count(value, out compiled._minItems);
                case "maxItems":
                    return Count(value, out compiled._maxItems);
                case "minProperties":
                    return Count(value, out compiled._minProperties);
                case "maxProperties":
                    return Count(value, out compiled._maxProperties);
                case "uniqueItems":
                    if (value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                    {
                        return false;
                    }
                    compiled._uniqueItems = value.ValueKind == JsonValueKind.True;
                    return true;
                case "pattern":
                    return value.ValueKind == JsonValueKind.String && Pattern(value.GetString()!, out compiled._pattern);
                case "required":
                    return Names(value, out compiled._required);
                case "properties":
                    return Properties(value, out compiled._properties);
                case "additionalProperties":
                    return (compiled._additional = Compile(value)) is not null;
                case "items":
                    return value.ValueKind != JsonValueKind.Array && (compiled._items = Compile(value)) is not null;
                case "allOf":
                    return List(value, out compiled._allOf);
                case "anyOf":
                    return List(value, out compiled._anyOf);
                case "oneOf":
                    return List(value, out compiled._oneOf);
                case "not":
                    return (compiled._not = Compile(value)) is not null;
                default:
                    // Any other keyword (patternProperties, unevaluated*, if/then/else, prefixItems, contains,
                    // dependent*, propertyNames, unknown ones): JsonSchema.Net evaluates the whole schema.
                    return false;
            }
        }

        /// <summary><c>#</c>, or <c>#/$defs/Name</c> or <c>#/definitions/Name</c> with a plain name.</summary>
        private CompiledSchema? Target(string reference)
        {
            if (_targets.TryGetValue(reference, out var known))
            {
                return known;
            }
            JsonElement target;
            if (reference == "#")
            {
                target = root;
            }
            else
            {
                var parts = reference.Split('/');
                if (parts is not ["#", "$defs" or "definitions", var name] || name.Length == 0 || name.AsSpan().IndexOfAny('~', '%') >= 0
                    || root.ValueKind != JsonValueKind.Object || !root.TryGetProperty(parts[1], out var definitions)
                    || definitions.ValueKind != JsonValueKind.Object || !definitions.TryGetProperty(name, out target))
                {
                    return null;
                }
            }
            var compiled = new CompiledSchema();
            _targets[reference] = compiled; // before filling it: a schema that refers to itself finds it
            if (!Fill(compiled, target))
            {
                _targets.Remove(reference);
                return null;
            }
            return compiled;
        }

        private bool List(JsonElement value, out CompiledSchema[]? schemas)
        {
            schemas = null;
            if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0)
            {
                return false;
            }
            var list = new List<CompiledSchema>();
            foreach (var item in value.EnumerateArray())
            {
                if (Compile(item) is not { } compiled)
                {
                    return false;
                }
                list.Add(compiled);
            }
            schemas = [.. list];
            return true;
        }

        private bool Properties(JsonElement value, out Member[] members)
        {
            members = [];
            if (value.ValueKind != JsonValueKind.Object)
            {
                return false;
            }
            var list = new List<Member>();
            foreach (var property in value.EnumerateObject())
            {
                if (Compile(property.Value) is not { } compiled)
                {
                    return false;
                }
                list.Add(new Member(Encoding.UTF8.GetBytes(property.Name), compiled));
            }
            members = [.. list];
            return true;
        }

        private static bool Types(JsonElement value, out JsonTypes types)
        {
            types = JsonTypes.None;
            if (value.ValueKind == JsonValueKind.String)
            {
                return Type(value.GetString()!, ref types);
            }
            if (value.ValueKind != JsonValueKind.Array)
            {
                return false;
            }
            foreach (var item in value.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String || !Type(item.GetString()!, ref types))
                {
                    return false;
                }
            }
            return types != JsonTypes.None;
        }

        private static bool Type(string name, ref JsonTypes types)
        {
            var type = name switch
            {
                "object" => JsonTypes.Object,
                "array" => JsonTypes.Array,
                "string" => JsonTypes.String,
                "number" => JsonTypes.Number,
                "integer" => JsonTypes.Integer,
                "boolean" => JsonTypes.Boolean,
                "null" => JsonTypes.Null,
                _ => JsonTypes.None,
            };
            types |= type;
            return type != JsonTypes.None;
        }

        private static bool Number(JsonElement value, out decimal? number)
        {
            number = value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out var d) ? d : null;
            return number is not null;
        }

        private static bool Count(JsonElement value, out long? count)
        {
            count = null;
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetDecimal(out var d) || d < 0 || d != decimal.Truncate(d) || d > int.MaxValue)
            {
                return false;
            }
            count = (long)d;
            return true;
        }

        private static bool Names(JsonElement value, out byte[][] names)
        {
            names = [];
            if (value.ValueKind != JsonValueKind.Array)
            {
                return false;
            }
            var list = new List<byte[]>();
            foreach (var item in value.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String)
                {
                    return false;
                }
                list.Add(Encoding.UTF8.GetBytes(item.GetString()!));
            }
            names = [.. list];
            return true;
        }

        /// <summary>The regular expression as JsonSchema.Net builds it; a pattern .NET cannot parse is left to JsonSchema.Net.</summary>
        private static bool Pattern(string pattern, out Regex? regex)
        {
            try
            {
                regex = new Regex(pattern, RegexOptions.ECMAScript, Regex.InfiniteMatchTimeout);
                return true;
            }
            catch (ArgumentException)
            {
                regex = null;
                return false;
            }
        }
    }
}
