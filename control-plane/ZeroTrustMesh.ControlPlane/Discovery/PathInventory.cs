using System.Text;

namespace ZeroTrustMesh.ControlPlane.Discovery;

/// <summary>One templated operation of a service as observed: <c>GET /users/{user}/orders/{}</c> and how often.</summary>
internal sealed record ObservedOperation(string Method, string Template, long Requests);

/// <summary>How <see cref="PathInventory"/> decides what is a parameter, and what it keeps.</summary>
internal sealed record PathInventoryOptions
{
    /// <summary>
    /// A position below a single concrete prefix (<c>/users/…</c>) becomes a parameter once this many distinct rare
    /// values were seen there (Akto merges at 10; fewer over-merges a small static vocabulary).
    /// </summary>
    public int DistinctValuesBelowLiteral { get; init; } = 10;

    /// <summary>A position below a parameter (<c>/users/{user}/…</c>) becomes a parameter at this many values seen under one parent instance each.</summary>
    public int DistinctValuesBelowParameter { get; init; } = 3;

    /// <summary>Below a single concrete prefix, a value seen this often is a word, not an identifier.</summary>
    public int RepeatsOfAWord { get; init; } = 3;

    /// <summary>This many sibling values leading to the same operations below are one enumerated parameter (<c>/packages/{npm,maven,docker}</c>).</summary>
    public int SiblingsOfOneShape { get; init; } = 3;

    /// <summary>Bound on the trie (distinct concrete segments kept): paths that would grow it further are counted as dropped.</summary>
    public int MaxNodes { get; init; } = 50_000;

    /// <summary>
    /// Distinct values kept at one place of the trie (below one concrete prefix): a value first seen after that many is
    /// kept as a parameter (<c>{}</c>). Far more than any vocabulary of words and than the counts need to decide, so the
    /// decisions stay the same; without it, identifiers (user names, repository names) filled
    /// <see cref="MaxNodes"/> and later paths, whole endpoints among them, were dropped.
    /// </summary>
    public int MaxValuesPerPosition { get; init; } = 1024;

    /// <summary>
    /// The operator's word on what is a parameter and what is not, as templates: <c>/users/{id}</c> makes that position a
    /// parameter however few values were seen; <c>/users/me</c> keeps <c>me</c> a word however many users were seen.
    /// </summary>
    public IReadOnlyList<string> Pins { get; init; } = [];
}

/// <summary>
/// One service's observed request paths, kept as a trie of concrete segments (identifier-shaped segments collapsed on
/// arrival, <see cref="SegmentShape"/>) and turned into templates on demand. A position becomes a parameter when its
/// values behave like identifiers rather than a vocabulary:
/// <list type="bullet">
/// <item>below a parameter, a word recurs under many parent instances (<c>/repos/{}/{}/pulls</c> for every repository)
/// while an identifier belongs to one (a commit SHA, a repository name under its owner);</item>
/// <item>below a single literal prefix, a word is requested again and again (<c>/user/emails</c>) while identifiers are
/// many and each seen rarely (<c>/users/octocat</c>, <c>/users/torvalds</c>, …).</item>
/// </list>
/// Values that behave like words stay literal beside the parameter (<c>/gists/public</c> next to <c>/gists/{}</c>).
/// Pins override both ways. Memory is bounded by <see cref="PathInventoryOptions.MaxNodes"/>; what did not fit is counted.
/// Thread-safe.
/// </summary>
internal sealed class PathInventory(PathInventoryOptions options)
{
    private readonly Node _root = new();
    private readonly string[][] _pins = [.. options.Pins.Select(Segments)];
    private readonly Lock _lock = new();
    private int _nodes;
    private long _dropped;

    /// <summary>The bound on distinct concrete segments kept (<see cref="PathInventoryOptions.MaxNodes"/>).</summary>
    public int MaxNodes => options.MaxNodes;

    /// <summary>The operator's pins this inventory follows.</summary>
    public IReadOnlyList<string> Pins => options.Pins;

    /// <summary>Requests whose path would have grown the trie past its bound, counted and not kept.</summary>
    public long Dropped
    {
        get
        {
            lock (_lock)
            {
                return _dropped;
            }
        }
    }

    /// <summary>Records one request. False when the trie is full and the path was new (counted in <see cref="Dropped"/>).</summary>
    public bool Observe(string method, string path, long requests = 1) => Keep(method, path, requests) is not null;

    /// <summary>
    /// Records one request and returns the path as the trie keeps it: <paramref name="path"/> itself, or with the
    /// segments it kept as a parameter written <c>{}</c> (a place that already had
    /// <see cref="PathInventoryOptions.MaxValuesPerPosition"/> values and a value that did not recur). Null when the trie is full and the path was new
    /// (counted in <see cref="Dropped"/>).
    /// </summary>
    public string? Keep(string method, string path, long requests = 1)
    {
        lock (_lock)
        {
            var node = _root;
            List<Range>? folded = null;
            foreach (var range in path.AsSpan().Split('/'))
            {
                var segment = path.AsSpan()[range];
                if (segment.IsEmpty)
                {
                    continue;
                }
                node.Children ??= new Dictionary<string, Node>(StringComparer.Ordinal);
                Node? child;
                if (SegmentShape.IsIdentifier(segment))
                {
                    node.Children.TryGetValue(SegmentShape.Parameter, out child);
                    segment = SegmentShape.Parameter;
                }
                else if (!node.Children.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(segment, out child)
                    && node.Children.Count - (node.Children.ContainsKey(SegmentShape.Parameter) ? 1 : 0) >= options.MaxValuesPerPosition
                    && !IsRecurring(node, segment))
                {
                    // So many values here already that this one is an identifier too: kept under the parameter.
                    (folded ??= []).Add(range);
                    node.Children.TryGetValue(SegmentShape.Parameter, out child);
                    segment = SegmentShape.Parameter;
                }
                if (child is null)
                {
                    if (_nodes >= options.MaxNodes)
                    {
                        _dropped += requests;
                        return null;
                    }
                    node.Children[segment.ToString()] = child = new Node { ManyValues = node.ManyValues || segment.SequenceEqual(SegmentShape.Parameter) };
                    _nodes++;
                }
                node.Through += requests;
                node = child;
            }
            node.Through += requests;
            node.Ends ??= new Dictionary<string, long>(StringComparer.Ordinal);
            node.Ends[method] = node.Ends.GetValueOrDefault(method) + requests;
            return folded is null ? path : Fold(path, folded);
        }

        // A word first requested after the place filled up (/secrets/public-key after 1,024 secret names) recurs, and an
        // identifier seldom does: a value met again RepeatsOfAWord times among the last values folded here gets its own node.
        bool IsRecurring(Node node, ReadOnlySpan<char> segment)
        {
            var candidates = node.Folded ??= new Dictionary<string, int>(StringComparer.Ordinal);
            var lookup = candidates.GetAlternateLookup<ReadOnlySpan<char>>();
            var seen = lookup.TryGetValue(segment, out var n) ? n + 1 : 1;
            if (seen >= options.RepeatsOfAWord)
            {
                lookup.Remove(segment);
                return true;
            }
            if (seen == 1 && candidates.Count >= options.MaxValuesPerPosition)
            {
                candidates.Clear(); // bounded: values that did not recur within a window are forgotten
            }
            lookup[segment] = seen;
            return false;
        }

        static string Fold(string path, List<Range> folded)
        {
            var kept = new StringBuilder(path.Length);
            var from = 0;
            foreach (var range in folded)
            {
                var (start, length) = range.GetOffsetAndLength(path.Length);
                kept.Append(path, from, start - from).Append(SegmentShape.Parameter);
                from = start + length;
            }
            return kept.Append(path, from, path.Length - from).ToString();
        }
    }

    /// <summary>The templated operations, parameters written <c>{}</c>, ordered by template then method.</summary>
    public IReadOnlyList<ObservedOperation> Operations()
    {
        List<ObservedOperation> result;
        lock (_lock)
        {
            result = [.. Walk([_root], []).Select(o => o with { Template = "/" + o.Template })];
        }
        result.Sort((a, b) => string.CompareOrdinal(a.Template, b.Template) is var c and not 0 ? c : string.CompareOrdinal(a.Method, b.Method));
        return result;
    }

    /// <summary>
    /// The template among <paramref name="operations"/> that <paramref name="path"/> falls under (parameters as <c>{}</c>),
    /// as the inventory decides it: segment by segment from the left, a literal before a parameter. Null when none does.
    /// </summary>
    public static string? TemplateOf(string path, IReadOnlyList<ObservedOperation> operations)
    {
        var segments = Segments(path);
        string[]? best = null;
        foreach (var operation in operations)
        {
            var template = Segments(operation.Template);
            if (template.Length != segments.Length)
            {
                continue;
            }
            var match = true;
            for (var i = 0; i < template.Length && match; i++)
            {
                match = template[i] == SegmentShape.Parameter || (template[i] == segments[i] && !SegmentShape.IsIdentifier(segments[i]));
            }
            if (match && (best is null || Prefer(template, best)))
            {
                best = template;
            }
        }
        return best is null ? null : "/" + string.Join('/', best);

        // a before b: at the first position where they differ, a has the literal.
        static bool Prefer(string[] a, string[] b)
        {
            for (var i = 0; i < a.Length; i++)
            {
                if (a[i] != b[i])
                {
                    return a[i] != SegmentShape.Parameter;
                }
            }
            return false;
        }
    }

    /// <summary>
    /// The operations below <paramref name="instances"/> (the concrete nodes that share one template position), their
    /// templates relative to it (<c>"issues/{}"</c>, <c>""</c> for the position itself).
    /// </summary>
    private List<ObservedOperation> Walk(List<Node> instances, List<string> prefix)
    {
        var result = new List<ObservedOperation>();
        var ends = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var instance in instances)
        {
            foreach (var (method, count) in instance.Ends ?? [])
            {
                ends[method] = ends.GetValueOrDefault(method) + count;
            }
        }
        foreach (var (method, count) in ends)
        {
            result.Add(new ObservedOperation(method, "", count));
        }

        // Every value seen at this position: which instances it was seen under, and how often.
        var values = new Dictionary<string, Value>(StringComparer.Ordinal);
        foreach (var instance in instances)
        {
            foreach (var (key, child) in instance.Children ?? [])
            {
                if (!values.TryGetValue(key, out var value))
                {
                    values[key] = value = new Value();
                }
                value.Nodes.Add(child);
                value.Through += child.Through;
                if (instance.ManyValues)
                {
                    value.ThroughManyValues += child.Through;
                }
                // A concrete instance is one parent; below one that stands for many, every request may be another.
                value.Parents += instance.ManyValues ? child.Through : 1;
            }
        }
        if (values.Count == 0)
        {
            return result;
        }

        var (forcedParameter, pinnedWords) = PinsAt(prefix);
        var belowParameter = instances.Count > 1;
        // Below a parameter a word recurs under several parent instances; an instance that stands for many values (a
        // {} node) cannot say under how many, so there a value requested again and again is a word, as below a literal.
        bool IsWord(string key, Value value) => pinnedWords.Contains(key)
            || (!forcedParameter && (belowParameter
                ? value.Nodes.Count >= 2 || value.ThroughManyValues >= options.RepeatsOfAWord
                : value.Through >= options.RepeatsOfAWord));
        var rare = values.Where(kv => kv.Key != SegmentShape.Parameter && !IsWord(kv.Key, kv.Value)).Select(kv => kv.Key).ToList();
        var parameterized = forcedParameter
            || rare.Count >= (belowParameter ? options.DistinctValuesBelowParameter : options.DistinctValuesBelowLiteral);

        var parameter = new List<Node>();
        if (values.TryGetValue(SegmentShape.Parameter, out var shaped))
        {
            parameter.AddRange(shaped.Nodes);
        }
        var words = new List<(string Key, Value Value)>();
        foreach (var (key, value) in values.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (key == SegmentShape.Parameter)
            {
                continue;
            }
            if (parameterized && !IsWord(key, value))
            {
                parameter.AddRange(value.Nodes);
            }
            else
            {
                words.Add((key, value));
            }
        }

        prefix.Add(SegmentShape.Parameter);
        var below = parameter.Count > 0 ? Walk(parameter, prefix) : [];
        prefix.RemoveAt(prefix.Count - 1);
        var merged = false;
        var literal = new List<(string Key, Value Value, List<ObservedOperation> Under)>();
        foreach (var (key, value) in words)
        {
            // A frequent value at a parameter position is an identifier too when the requests below it fit the templates
            // below the parameter (a popular repository name: /repos/{}/dotfiles/issues); a word leads elsewhere. A value
            // with nothing below it cannot be told from a word by what follows (/secrets/public-key beside /secrets/{}):
            // it stays one unless it was seen only a few times, as a popular identifier is (/secrets/NPM_TOKEN).
            if (parameterized && !pinnedWords.Contains(key) && (FitsBelow(value.Nodes, below) || IsRareLeaf(value, belowParameter)))
            {
                parameter.AddRange(value.Nodes);
                merged = true;
                continue;
            }
            prefix.Add(key);
            literal.Add((key, value, Walk(value.Nodes, prefix)));
            prefix.RemoveAt(prefix.Count - 1);
        }
        // A small set of values each leading to the same API is an enumerated parameter (/packages/{npm,maven,docker}/…);
        // words lead to different APIs (/repos/{}/{}/{issues,pulls}/…).
        foreach (var group in SameShapeSiblings(literal.Where(l => !pinnedWords.Contains(l.Key)).ToList()))
        {
            foreach (var sibling in group)
            {
                parameter.AddRange(sibling.Value.Nodes);
                literal.Remove(sibling);
            }
            merged = true;
        }
        foreach (var (key, _, under) in literal)
        {
            result.AddRange(under.Select(o => o with { Template = Join(key, o.Template) }));
        }
        if (merged)
        {
            prefix.Add(SegmentShape.Parameter);
            below = Walk(parameter, prefix);
            prefix.RemoveAt(prefix.Count - 1);
        }
        result.AddRange(below.Select(o => o with { Template = Join(SegmentShape.Parameter, o.Template) }));
        return result;
    }

    /// <summary>
    /// Whether the requests below <paramref name="nodes"/> (up to a bounded number of distinct paths) mostly fall under
    /// <paramref name="templates"/>, and some go deeper than the value itself.
    /// </summary>
    private static bool FitsBelow(List<Node> nodes, List<ObservedOperation> templates)
    {
        if (templates.Count == 0)
        {
            return false;
        }
        var parsed = templates.Select(t => (t.Method, Segments: Segments(t.Template))).ToList();
        var paths = new List<(string Method, string[] Segments)>();
        var stack = new Stack<(Node Node, string[] Path)>(nodes.Select(n => (n, Array.Empty<string>())));
        while (stack.Count > 0 && paths.Count < 64)
        {
            var (node, path) = stack.Pop();
            foreach (var method in node.Ends?.Keys ?? Enumerable.Empty<string>())
            {
                paths.Add((method, path));
            }
            foreach (var (key, child) in node.Children ?? [])
            {
                stack.Push((child, [.. path, key]));
            }
        }
        if (paths.All(p => p.Segments.Length == 0))
        {
            return false;
        }
        var fitting = paths.Count(p => parsed.Any(t => t.Method == p.Method && t.Segments.Length == p.Segments.Length
            && t.Segments.Zip(p.Segments).All(x => x.First == SegmentShape.Parameter || x.First == x.Second)));
        return fitting * 2 >= paths.Count;
    }

    /// <summary>
    /// Groups of at least <see cref="PathInventoryOptions.SiblingsOfOneShape"/> sibling values whose operations below are
    /// mostly the same (Jaccard ≥ 0.6 over method and relative template, at least two operations each).
    /// </summary>
    private List<List<(string Key, Value Value, List<ObservedOperation> Under)>> SameShapeSiblings(List<(string Key, Value Value, List<ObservedOperation> Under)> siblings)
    {
        var candidates = siblings.Where(s => s.Under.Count >= 2 && s.Under.Any(o => o.Template.Length > 0)).ToList();
        var shapes = candidates.Select(c => c.Under.Select(o => (o.Method, o.Template)).ToHashSet()).ToList();
        var group = Enumerable.Range(0, candidates.Count).ToArray();
        int Find(int i) => group[i] == i ? i : group[i] = Find(group[i]);
        for (var i = 0; i < candidates.Count; i++)
        {
            for (var j = i + 1; j < candidates.Count; j++)
            {
                // The shapes must agree on words below, not only on a collection's CRUD shape ("", "{}"), which
                // unrelated resources share (/labels, /milestones, /keys).
                var shared = shapes[i].Where(shapes[j].Contains).ToList();
                var sharedWords = shared.Count(o => PathInventory.Segments(o.Template).Any(s => s != SegmentShape.Parameter));
                if (sharedWords >= 3 && shared.Count * 10 >= (shapes[i].Count + shapes[j].Count - shared.Count) * 8)
                {
                    group[Find(i)] = Find(j);
                }
            }
        }
        return [.. Enumerable.Range(0, candidates.Count).GroupBy(Find).Where(g => g.Count() >= options.SiblingsOfOneShape).Select(g => g.Select(i => candidates[i]).ToList())];
    }

    /// <summary>
    /// Nothing below it, and seen under no more parents (<see cref="Value.Parents"/>; below a literal, no more often) than
    /// a word must be.
    /// </summary>
    private bool IsRareLeaf(Value value, bool belowParameter) =>
        value.Nodes.All(n => n.Children is null or { Count: 0 })
        && (belowParameter ? value.Parents : value.Through) <= options.RepeatsOfAWord;

    private static string Join(string segment, string rest) => rest.Length == 0 ? segment : segment + "/" + rest;

    /// <summary>What the pins say about the position after <paramref name="prefix"/>: a parameter, and which values stay words.</summary>
    private (bool Parameter, HashSet<string> Words) PinsAt(List<string> prefix)
    {
        var parameter = false;
        var words = new HashSet<string>(StringComparer.Ordinal);
        foreach (var pin in _pins)
        {
            if (pin.Length <= prefix.Count)
            {
                continue;
            }
            var matches = true;
            for (var i = 0; i < prefix.Count && matches; i++)
            {
                matches = pin[i] == SegmentShape.Parameter || pin[i] == prefix[i];
            }
            if (!matches)
            {
                continue;
            }
            if (pin[prefix.Count] == SegmentShape.Parameter)
            {
                parameter = true;
            }
            else
            {
                words.Add(pin[prefix.Count]);
            }
        }
        return (parameter, words);
    }

    /// <summary>A path or template as segments, any <c>{name}</c> written <see cref="SegmentShape.Parameter"/>.</summary>
    public static string[] Segments(string path) =>
        [.. path.Split('/', StringSplitOptions.RemoveEmptyEntries).Select(s => s.StartsWith('{') && s.EndsWith('}') ? SegmentShape.Parameter : s)];

    /// <summary>A template with its parameters named after the word before each (<c>/users/{user}/keys/{key}</c>), for people and OpenAPI.</summary>
    public static string Named(string template)
    {
        var segments = template.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var used = new HashSet<string>(StringComparer.Ordinal);
        var named = new StringBuilder();
        for (var i = 0; i < segments.Length; i++)
        {
            var segment = segments[i];
            if (segment == SegmentShape.Parameter)
            {
                var word = i > 0 && segments[i - 1] != SegmentShape.Parameter ? segments[i - 1].TrimEnd('s') : "param";
                var name = word.Length == 0 ? "param" : word;
                for (var n = 2; !used.Add(name); n++)
                {
                    name = $"{word}{n}";
                }
                segment = "{" + name + "}";
            }
            named.Append('/').Append(segment);
        }
        return named.Length == 0 ? "/" : named.ToString();
    }

    private sealed class Node
    {
        public Dictionary<string, Node>? Children;
        public Dictionary<string, long>? Ends;
        public long Through;

        /// <summary>Values kept under this node's parameter because it was full, and how often each came (<see cref="PathInventoryOptions.MaxValuesPerPosition"/> at most).</summary>
        public Dictionary<string, int>? Folded;

        /// <summary>Keyed <c>{}</c> or below such a node: it stands for many concrete prefixes (identifiers by shape, or values past <see cref="PathInventoryOptions.MaxValuesPerPosition"/>).</summary>
        public bool ManyValues;
    }

    private sealed class Value
    {
        public readonly List<Node> Nodes = [];
        public long Through;

        /// <summary>The part of <see cref="Through"/> seen under instances that stand for many values.</summary>
        public long ThroughManyValues;

        /// <summary>
        /// The most distinct parents it can have been seen under: one per concrete instance, and one per request under an
        /// instance that stands for many values (that instance itself is no parent of its own: counting it as one too
        /// made a secret name requested twice under <c>/repos/{}/{}</c> look like one seen under four repositories).
        /// </summary>
        public long Parents;
    }
}
