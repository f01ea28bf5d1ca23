using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// A set of path patterns with the same meaning as in rules (exact <c>/a</c>, prefix <c>/a/*</c>, suffix <c>*.json</c>,
/// <c>*</c>, templates <c>/a/{*}/b</c> and <c>/a/{**}</c>), for other resources that select requests by path (rate-limit routes).
/// Without <paramref name="templates"/> a brace is literal text. Validate the patterns first, with the same setting.
/// </summary>
public sealed class PathPatterns(IEnumerable<string> patterns, bool templates = true)
{
    private readonly PathMatcher _matcher = new(patterns.Select(p => templates ? StringPattern.ParsePath(p) : StringPattern.Parse(p)));

    /// <param name="path">A normalized path without query string.</param>
    public bool Matches(ReadOnlySpan<char> path) => _matcher.Matches(path);
}
