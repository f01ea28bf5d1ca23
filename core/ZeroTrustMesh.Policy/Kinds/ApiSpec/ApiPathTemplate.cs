namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// An OpenAPI path template (<c>/users/{userId}/orders</c>) split into segments, matched against a request path split
/// the same way. A literal segment beats a parameter (<see cref="LiteralSegments"/> orders candidates), so
/// <c>/users/me</c> wins over <c>/users/{id}</c>. Shared by the sidecar and <c>ztmctl policy test</c>.
/// </summary>
public sealed class ApiPathTemplate
{
    private readonly string?[] _segments;
    private readonly string?[] _names;

    public ApiPathTemplate(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        var parts = template.Split('/');
        _names = [.. parts.Select(s => s.Length > 2 && s[0] == '{' && s[^1] == '}' ? s[1..^1] : null)];
        _segments = [.. parts.Select((s, i) => _names[i] is null ? s : null)];
        LiteralSegments = _segments.Count(s => s is not null);
    }

    public int LiteralSegments { get; }

    public int SegmentCount => _segments.Length;

    /// <summary>The segment index of parameter <paramref name="name"/>; -1 when the template has none.</summary>
    public int IndexOf(string name) => Array.IndexOf(_names, name);

    /// <param name="segments">The request path split on '/' (no query string).</param>
    public bool Matches(string[] segments)
    {
        if (segments.Length != _segments.Length)
        {
            return false;
        }
        for (var i = 0; i < segments.Length; i++)
        {
            if (_segments[i] is { } literal ? literal != segments[i] : segments[i].Length == 0)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The same match on the path itself, segment by segment: nothing is allocated (the sidecar matches every request).</summary>
    /// <param name="path">The request path (no query string).</param>
    public bool Matches(ReadOnlySpan<char> path)
    {
        var index = 0;
        foreach (var range in path.Split('/'))
        {
            if (index == _segments.Length)
            {
                return false;
            }
            var segment = path[range];
            if (_segments[index++] is { } literal ? !segment.SequenceEqual(literal) : segment.IsEmpty)
            {
                return false;
            }
        }
        return index == _segments.Length;
    }

    /// <summary>A parameter's value in a matching request: its segment, percent-decoded.</summary>
    public static string Value(string[] segments, int index) => Decode(segments[index]);

    /// <summary>A parameter's value in a path that <see cref="Matches(ReadOnlySpan{char})"/>: its segment, percent-decoded.</summary>
    public static string Value(ReadOnlySpan<char> path, int index)
    {
        foreach (var range in path.Split('/'))
        {
            if (index-- == 0)
            {
                return Decode(path[range].ToString());
            }
        }
        throw new ArgumentOutOfRangeException(nameof(index), index, "the path has fewer segments");
    }

    private static string Decode(string segment) => segment.Contains('%', StringComparison.Ordinal) ? Uri.UnescapeDataString(segment) : segment;

    /// <summary>The operation of <paramref name="operations"/> a request is for (most literal segments first), or null.</summary>
    public static ApiOperation? Find(IEnumerable<ApiOperation> operations, string method, string[] segments) =>
        operations.Select(o => (Operation: o, Template: new ApiPathTemplate(o.Path)))
            .Where(c => c.Operation.Method == method && c.Template.Matches(segments))
            .OrderByDescending(c => c.Template.LiteralSegments)
            .Select(c => c.Operation)
            .FirstOrDefault();
}
