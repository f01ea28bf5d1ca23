using System.Globalization;

namespace ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

/// <summary>
/// Where a value stands against the redaction rules: what they do to it (<see cref="Action"/>) and, for its members or
/// elements, the state each one is in — null once no rule can match below. The rules compile to these states once (a
/// deterministic automaton over the pointers' segments, wildcards merged in), so a response is matched with at most one
/// lookup of the member name's UTF-8 bytes (<see cref="Utf8Names{T}"/>), however many rules there are.
/// </summary>
internal sealed class RuleState
{
    private Utf8Names<RuleState> _names = null!;
    private Dictionary<int, RuleState>? _indexes;

    private RuleState()
    {
    }

    /// <summary>What the rules do to a value in this state; null: nothing (the rules may still match inside it).</summary>
    public RedactionAction? Action { get; private set; }

    /// <summary>The state of a member or element no rule names (only wildcards match it); null: no rule applies below.</summary>
    public RuleState? Other { get; private set; }

    /// <summary>Whether a member's name decides its state (otherwise every member is in <see cref="Other"/>).</summary>
    public bool NeedsNames => _names.Count > 0;

    /// <param name="name">The member's name as UTF-8, unescaped (and checked to be UTF-8).</param>
    public RuleState? Member(ReadOnlySpan<byte> name) => _names.TryGetValue(name, out var state) ? state : Other;

    public RuleState? Element(int index) => _indexes is not null && _indexes.TryGetValue(index, out var state) ? state : Other;

    /// <summary>The state of the whole body, or null without rules.</summary>
    /// <exception cref="ArgumentException">A pointer is not a JSON Pointer to a member or element.</exception>
    public static RuleState? Compile(IReadOnlyList<RedactionRule> rules)
    {
        var root = new Node();
        var errors = new List<string>();
        foreach (var rule in rules)
        {
            if (Segments(rule.Pointer, errors) is not { } segments)
            {
                continue;
            }
            var node = root;
            foreach (var segment in segments)
            {
                node = segment is null
                    ? node.Any ??= new Node()
                    : node.Names.TryGetValue(segment, out var next) ? next : node.Names[segment] = new Node();
            }
            // Remove wins over Mask when two rules name the same value: it shows less.
            node.Action = node.Action == RedactionAction.Remove ? RedactionAction.Remove : rule.Action;
        }
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", errors));
        }
        return rules.Count == 0 ? null : new Builder().StateOf([root]);
    }

    /// <summary>
    /// The pointer's segments, unescaped, null for <c>*</c>; or null (with the reason in <paramref name="errors"/>) when
    /// it is not a JSON Pointer or names the whole body.
    /// </summary>
    private static string?[]? Segments(string pointer, List<string> errors)
    {
        if (pointer.Length == 0)
        {
            errors.Add("redaction pointer '' names the whole body; a rule names a member or an element, e.g. /password or /users/*/ssn");
            return null;
        }
        if (pointer[0] != '/')
        {
            errors.Add($"redaction pointer '{pointer}' does not start with '/' (RFC 6901), e.g. /password or /users/*/ssn");
            return null;
        }
        var raw = pointer[1..].Split('/');
        var segments = new string?[raw.Length];
        for (var i = 0; i < raw.Length; i++)
        {
            var segment = raw[i];
            for (var tilde = segment.IndexOf('~', StringComparison.Ordinal); tilde >= 0; tilde = segment.IndexOf('~', tilde + 1))
            {
                if (tilde + 1 >= segment.Length || segment[tilde + 1] is not ('0' or '1'))
                {
                    errors.Add($"redaction pointer '{pointer}': '~' must be followed by 0 (for '~') or 1 (for '/') (RFC 6901)");
                    return null;
                }
            }
            segments[i] = segment == "*" ? null : segment.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
        }
        return segments;
    }

    /// <summary>
    /// Builds the states reachable from the root, each once, breadth first (subset construction over the tree of
    /// pointers: a state is the set of tree positions a value can be at). No recursion, however long a pointer.
    /// </summary>
    private sealed class Builder
    {
        private readonly Dictionary<string, RuleState> _made = new(StringComparer.Ordinal);
        private readonly Queue<(RuleState State, List<Node> Nodes)> _todo = new();

        public RuleState? StateOf(List<Node> nodes)
        {
            var first = Enqueue(nodes);
            while (_todo.TryDequeue(out var next))
            {
                Fill(next.State, next.Nodes);
            }
            return first;
        }

        private RuleState? Enqueue(List<Node> nodes)
        {
            if (nodes.Count == 0)
            {
                return null;
            }
            var key = string.Join(',', nodes.Select(n => n.Id).Order());
            if (!_made.TryGetValue(key, out var state))
            {
                _made[key] = state = new RuleState();
                _todo.Enqueue((state, nodes));
            }
            return state;
        }

        private void Fill(RuleState state, List<Node> nodes)
        {
            var wildcards = nodes.Where(n => n.Any is not null).Select(n => n.Any!).Distinct().ToList();
            var names = new Dictionary<string, RuleState>(StringComparer.Ordinal);
            foreach (var name in nodes.SelectMany(n => n.Names.Keys).Distinct(StringComparer.Ordinal))
            {
                var next = nodes.Where(n => n.Names.ContainsKey(name)).Select(n => n.Names[name]).Concat(wildcards).Distinct().ToList();
                var named = Enqueue(next)!;
                names[name] = named;
                if (ArrayIndex(name) is { } index)
                {
                    (state._indexes ??= [])[index] = named;
                }
            }
            state._names = new Utf8Names<RuleState>(names);
            state.Other = Enqueue(wildcards);
            state.Action = nodes.Any(n => n.Action == RedactionAction.Remove) ? RedactionAction.Remove
                : nodes.Any(n => n.Action == RedactionAction.Mask) ? RedactionAction.Mask
                : null;
        }
    }

    /// <summary>The array index a segment names (RFC 6901: <c>0</c>, or digits without a leading zero), if any.</summary>
    private static int? ArrayIndex(string segment) =>
        segment.Length > 0 && (segment == "0" || segment[0] != '0') && segment.All(char.IsAsciiDigit)
            && int.TryParse(segment, NumberStyles.None, CultureInfo.InvariantCulture, out var index) ? index : null;

    /// <summary>A position in the tree of rule pointers.</summary>
    private sealed class Node
    {
        private static int s_ids;

        /// <summary>Tells positions apart in a state's key.</summary>
        public int Id { get; } = Interlocked.Increment(ref s_ids);

        public Dictionary<string, Node> Names { get; } = new(StringComparer.Ordinal);

        public Node? Any { get; set; }

        public RedactionAction? Action { get; set; }
    }
}
