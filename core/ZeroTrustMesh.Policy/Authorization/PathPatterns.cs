using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// A set of path patterns with the same meaning as in rules (exact <c>/a</c>, prefix <c>/a/*</c>, suffix <c>*.json</c>,
/// <c>*</c>, templates <c>/a/{*}/b</c> and <c>/a/{**}</c>), for other resources that select requests by path (rate-limit routes). Validate the patterns first.
/// </summary>
public sealed class PathPatterns(IEnumerable<string> patterns)
{
    private readonly PathMatcher _matcher = new(patterns.Select(StringPattern.ParsePath));

    /// <param name="path">A normalized path without query string.</param>
    public bool Matches(ReadOnlySpan<char> path) => _matcher.Matches(path);
}
