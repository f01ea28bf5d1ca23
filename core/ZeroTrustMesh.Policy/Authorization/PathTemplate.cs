namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// Path templates in the spirit of Istio's AuthorizationPolicy: <c>{*}</c> stands for exactly one non-empty segment,
/// <c>{**}</c> (last position only) for one or more segments; every other segment is literal. <c>/orders/{*}/lines</c>
/// matches <c>/orders/42/lines</c>, not <c>/orders/lines</c> nor <c>/orders/4/2/lines</c>; <c>/files/{**}</c> matches
/// <c>/files/a</c> and <c>/files/a/b.txt</c>, not <c>/files</c> nor <c>/files/</c>.
/// Matching walks the template and the path side by side, segment by segment: nothing is allocated per request.
/// </summary>
internal static class PathTemplate
{
    public const string OneSegment = "{*}";
    public const string AnySegments = "{**}";

    /// <summary>A path is a template when it has an operator; <see cref="Validate"/> refuses any other brace.</summary>
    public static bool IsTemplate(string path) => path.Contains(OneSegment, StringComparison.Ordinal) || path.Contains(AnySegments, StringComparison.Ordinal);

    /// <summary>
    /// The literal start of a template up to and including the '/' before its first operator (<c>/orders/</c> for
    /// <c>/orders/{*}/lines</c>): every path the template matches starts with it, so the rule can be filed under it in the
    /// prefix index.
    /// </summary>
    public static string LiteralPrefix(string template) => template[..(template.IndexOf('{', StringComparison.Ordinal))];

    /// <summary>Why <paramref name="path"/> (which has a brace) is not a valid template, or null when it is.</summary>
    public static string? Validate(string path)
    {
        if (path[0] != '/')
        {
            return $"'{path}' must start with '/' to be a path template";
        }
        var segments = path[1..].Split('/');
        for (var i = 0; i < segments.Length; i++)
        {
            var segment = segments[i];
            if (segment == AnySegments)
            {
                if (i != segments.Length - 1)
                {
                    return $"'{path}': '{{**}}' must be the last segment (it matches one or more segments to the end of the path)";
                }
                continue;
            }
            if (segment == OneSegment)
            {
                continue;
            }
            if (segment.AsSpan().IndexOfAny('{', '}', '*') >= 0)
            {
                return $"'{path}': segment '{segment}' is not supported in a template: a segment is literal text (no '{{', '}}' or '*'), '{{*}}' (one segment) or '{{**}}' (one or more, last)";
            }
        }
        return null;
    }

    /// <param name="template">A template that passed <see cref="Validate"/>.</param>
    /// <param name="path">A normalized path without query string.</param>
    public static bool Matches(ReadOnlySpan<char> template, ReadOnlySpan<char> path)
    {
        while (!template.IsEmpty)
        {
            // Both are at a '/': the template's is guaranteed by validation.
            if (path.IsEmpty || path[0] != '/')
            {
                return false;
            }
            template = template[1..];
            path = path[1..];
            var templateSegment = Segment(template);
            var pathSegment = Segment(path);
            if (templateSegment.SequenceEqual(AnySegments))
            {
                return !pathSegment.IsEmpty;
            }
            if (templateSegment.SequenceEqual(OneSegment) ? pathSegment.IsEmpty : !templateSegment.SequenceEqual(pathSegment))
            {
                return false;
            }
            template = template[templateSegment.Length..];
            path = path[pathSegment.Length..];
        }
        return path.IsEmpty;
    }

    private static ReadOnlySpan<char> Segment(ReadOnlySpan<char> rest)
    {
        var slash = rest.IndexOf('/');
        return slash < 0 ? rest : rest[..slash];
    }
}
