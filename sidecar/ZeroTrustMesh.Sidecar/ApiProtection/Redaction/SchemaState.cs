using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

/// <summary>What the response schema says about one member or element: removed (undeclared), or kept and filtered by <see cref="State"/>.</summary>
/// <param name="State">The declarations that apply inside the value; null: none (a free-form value, kept whole).</param>
internal readonly record struct MemberSchema(bool Removed, SchemaState? State)
{
    public static readonly MemberSchema Undeclared = new(true, null);

    public static readonly MemberSchema FreeForm = new(false, null);
}

/// <summary>
/// The members and elements the response schema declares for a value ("undeclared fields" mode), compiled once from a
/// JSON Schema 2020-12 document with the declarations of every schema that applies to the value merged
/// (<c>$ref</c>, <c>allOf</c>, <c>anyOf</c>, <c>oneOf</c>, <c>then</c>, <c>else</c>, <c>dependentSchemas</c>: a member
/// declared by any of them stays). An object's member is declared by <c>properties</c>, a matching
/// <c>patternProperties</c>, or <c>additionalProperties</c> (or <c>unevaluatedProperties</c>) that is not <c>false</c>; an
/// array's element by <c>prefixItems</c> or <c>items</c>. A member whose schema is <c>false</c> or <c>writeOnly</c> is
/// removed. A value whose schemas say nothing about members (or elements) is free-form and kept whole: <c>{}</c>,
/// <c>true</c>, <c>{"type": "object"}</c>.
/// </summary>
internal sealed class SchemaState
{
    /// <summary>More would mean a schema built to blow up the merge of its branches; far above any API's.</summary>
    private const int MaxStates = 10_000;

    /// <summary>One object's applicable <c>patternProperties</c>, tried per undeclared member name; 2^n merged outcomes are precomputed.</summary>
    private const int MaxPatterns = 10;

    private Utf8Names<MemberSchema> _names = null!;
    private Regex[] _patterns = [];
    private MemberSchema[] _others = [];
    private MemberSchema[] _prefix = [];
    private MemberSchema _rest;

    private SchemaState()
    {
    }

    /// <summary>Whether this value's members are filtered; false: every member is kept whole (a free-form object).</summary>
    public bool FiltersMembers { get; private set; }

    /// <summary>Whether this value's elements are filtered; false: every element is kept whole.</summary>
    public bool FiltersElements { get; private set; }

    /// <param name="name">The member's name as UTF-8, unescaped (and checked to be UTF-8).</param>
    public MemberSchema Member(ReadOnlySpan<byte> name)
    {
        if (!FiltersMembers)
        {
            return MemberSchema.FreeForm;
        }
        if (_names.TryGetValue(name, out var declared))
        {
            return declared;
        }
        if (_patterns.Length == 0)
        {
            return _others[0];
        }
        // Only a pattern needs the name as text (UTF-16 is never longer than the UTF-8 it comes from).
        char[]? rented = null;
        Span<char> text = name.Length <= 256 ? stackalloc char[256] : (rented = ArrayPool<char>.Shared.Rent(name.Length));
        try
        {
            text = text[..Encoding.UTF8.GetChars(name, text)];
            var matched = 0;
            for (var i = 0; i < _patterns.Length; i++)
            {
                if (Matches(_patterns[i], text))
                {
                    matched |= 1 << i;
                }
            }
            return _others[matched];
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<char>.Shared.Return(rented);
            }
        }
    }

    /// <summary>A pattern that needs backtracking has a time limit; a name it cannot decide in time counts as not matching (so it is not declared by it).</summary>
    private static bool Matches(Regex pattern, ReadOnlySpan<char> name)
    {
        try
        {
            return pattern.IsMatch(name);
        }
        catch (RegexMatchTimeoutException)
        {
            return false;
        }
    }

    public MemberSchema Element(int index) =>
        !FiltersElements ? MemberSchema.FreeForm : index < _prefix.Length ? _prefix[index] : _rest;

    /// <summary>The declarations for the whole body.</summary>
    /// <exception cref="ArgumentException">The document is not a schema this mode can use (every problem, with its location).</exception>
    public static SchemaState? Compile(string schema)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(schema);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"response schema: not JSON: {e.Message}", e);
        }
        using (document)
        {
            var nodes = new SchemaNodes(document.RootElement);
            var root = nodes.At(document.RootElement, "#");
            nodes.ThrowIfErrors();
            if (root.IsNever())
            {
                throw new ArgumentException("response schema: it allows no value at all (false), so there is nothing to keep");
            }
            return new Merger().StateOf([root]);
        }
    }

    /// <summary>Builds the states reachable from the body's schemas, each once, breadth first (recursive schemas loop back to a state).</summary>
    private sealed class Merger
    {
        private readonly Dictionary<string, SchemaState> _made = new(StringComparer.Ordinal);
        private readonly Queue<(SchemaState State, List<SchemaNode> Schemas)> _todo = new();

        public SchemaState? StateOf(List<SchemaNode> schemas)
        {
            var first = Enqueue(schemas);
            while (_todo.TryDequeue(out var next))
            {
                Fill(next.State, next.Schemas);
            }
            return first;
        }

        /// <summary>The state for the values <paramref name="schemas"/> (none of them false) apply to; null when they declare nothing.</summary>
        private SchemaState? Enqueue(List<SchemaNode> schemas)
        {
            var all = Applying(schemas);
            if (!all.Any(s => s.DeclaresMembers || s.DeclaresElements))
            {
                return null;
            }
            var key = string.Join(',', all.Select(s => s.Id).Order());
            if (_made.TryGetValue(key, out var made))
            {
                return made;
            }
            if (_made.Count >= MaxStates)
            {
                throw new ArgumentException($"response schema: merging its branches needs more than {MaxStates} combinations; simplify its allOf/anyOf/oneOf");
            }
            var state = new SchemaState();
            _made[key] = state;
            _todo.Enqueue((state, all));
            return state;
        }

        /// <summary>The schemas and every schema their applicators bring in, each once.</summary>
        private static List<SchemaNode> Applying(List<SchemaNode> schemas)
        {
            var seen = new HashSet<SchemaNode>();
            var pending = new Stack<SchemaNode>(schemas);
            while (pending.TryPop(out var schema))
            {
                if (seen.Add(schema))
                {
                    schema.Applicators.ForEach(pending.Push);
                }
            }
            return [.. seen];
        }

        private void Fill(SchemaState state, List<SchemaNode> all)
        {
            if (all.Any(s => s.DeclaresMembers))
            {
                state.FiltersMembers = true;
                var patterns = all.SelectMany(s => s.Patterns.Select(p => (Owner: s, p.Regex, p.Schema))).ToList();
                if (patterns.Count > MaxPatterns)
                {
                    throw new ArgumentException($"response schema: {patterns.Count} patternProperties apply to one object; at most {MaxPatterns} can be merged");
                }
                var names = new Dictionary<string, MemberSchema>(StringComparer.Ordinal);
                foreach (var name in all.SelectMany(s => s.Properties.Keys).Distinct(StringComparer.Ordinal))
                {
                    names[name] = Verdict(all.SelectMany(s => MemberSchemas(s, name)).ToList(), all, s => s.UnevaluatedProperties);
                }
                state._names = new Utf8Names<MemberSchema>(names);
                state._patterns = [.. patterns.Select(p => p.Regex)];
                state._others = new MemberSchema[1 << patterns.Count];
                for (var matched = 0; matched < state._others.Length; matched++)
                {
                    var applying = new List<SchemaNode>();
                    foreach (var schema in all)
                    {
                        var any = false;
                        for (var i = 0; i < patterns.Count; i++)
                        {
                            if (patterns[i].Owner == schema && (matched & (1 << i)) != 0)
                            {
                                applying.Add(patterns[i].Schema);
                                any = true;
                            }
                        }
                        if (!any && schema.AdditionalProperties is { } additional)
                        {
                            applying.Add(additional);
                        }
                    }
                    state._others[matched] = Verdict(applying, all, s => s.UnevaluatedProperties);
                }
            }
            else
            {
                state._names = new Utf8Names<MemberSchema>([]);
            }
            if (all.Any(s => s.DeclaresElements))
            {
                state.FiltersElements = true;
                var prefix = all.Max(s => s.PrefixItems.Count);
                state._prefix = new MemberSchema[prefix];
                for (var i = 0; i < prefix; i++)
                {
                    var applying = all.Select(s => i < s.PrefixItems.Count ? s.PrefixItems[i] : s.Items).OfType<SchemaNode>().ToList();
                    state._prefix[i] = Verdict(applying, all, s => s.UnevaluatedItems);
                }
                state._rest = Verdict(all.Select(s => s.Items).OfType<SchemaNode>().ToList(), all, s => s.UnevaluatedItems);
            }
        }

        /// <summary>The schemas of one object that apply to its member <paramref name="name"/>, as JSON Schema evaluates them.</summary>
        private static IEnumerable<SchemaNode> MemberSchemas(SchemaNode schema, string name)
        {
            var declared = false;
            if (schema.Properties.TryGetValue(name, out var property))
            {
                declared = true;
                yield return property;
            }
            foreach (var (regex, patternSchema) in schema.Patterns)
            {
                if (regex.IsMatch(name))
                {
                    declared = true;
                    yield return patternSchema;
                }
            }
            if (!declared && schema.AdditionalProperties is { } additional)
            {
                yield return additional;
            }
        }

        /// <summary>
        /// A member or element with the schemas that declare it (or, when none does, the <c>unevaluated…</c> ones):
        /// removed when there are none or they are all false; otherwise kept, filtered by them.
        /// </summary>
        private MemberSchema Verdict(List<SchemaNode> applying, List<SchemaNode> all, Func<SchemaNode, SchemaNode?> unevaluated)
        {
            if (applying.Count == 0)
            {
                applying = all.Select(unevaluated).OfType<SchemaNode>().ToList();
            }
            var live = applying.Where(s => !s.IsNever()).Distinct().ToList();
            return live.Count == 0 ? MemberSchema.Undeclared : new MemberSchema(false, Enqueue(live));
        }
    }
}
