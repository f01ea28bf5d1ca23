using System.Text;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>
/// What the sidecar does with a path holding an escaped slash (<c>%2F</c>), an escaped backslash (<c>%5C</c>) or a
/// backslash: characters Kestrel leaves in the path as data, but that many apps and frameworks decode or treat as a
/// separator. Left alone, <c>/orders/..%2fpayments</c> matches a rule for <c>/orders/*</c> and reaches an app that reads
/// it as <c>/payments</c>. As Envoy's <c>path_with_escaped_slashes_action</c>, without its redirect.
/// </summary>
internal enum EscapedSlashes
{
    /// <summary>400: the caller must send the path it means (the default).</summary>
    Reject,

    /// <summary>Decode them to '/', remove the dot segments and repeated slashes that appear, and forward that path: policy and app read one path.</summary>
    Unescape,

    /// <summary>Match and forward the path as it is: only for apps known to treat them as data.</summary>
    Keep,
}

/// <summary>The path as policy sees it and the app receives it.</summary>
internal static class InboundPath
{
    /// <summary>
    /// Normalizes a request path (Kestrel has already decoded percent-escapes other than <c>%2F</c> and removed dot
    /// segments): repeated slashes are merged, so <c>//admin/x</c> cannot slip past a rule on <c>/admin/*</c>, and escaped
    /// slashes and backslashes are handled as <paramref name="escaped"/> says. Returns null with the reason when the path
    /// is refused.
    /// </summary>
    public static string? Normalize(string? path, EscapedSlashes escaped, out string? refusal)
    {
        refusal = null;
        if (string.IsNullOrEmpty(path))
        {
            return "/";
        }
        if (escaped != EscapedSlashes.Keep && HasEscapedSlash(path))
        {
            if (escaped == EscapedSlashes.Reject)
            {
                refusal = "the path holds an escaped slash or a backslash (%2F, %5C or \\), which the app could read as a separator: "
                    + "send the path unescaped (the sidecar runs with --escaped-slashes reject)";
                return null;
            }
            path = RemoveDotSegments(path.Replace("%2F", "/", StringComparison.OrdinalIgnoreCase)
                .Replace("%5C", "/", StringComparison.OrdinalIgnoreCase)
                .Replace('\\', '/'));
        }
        return path.Contains("//", StringComparison.Ordinal) ? MergeSlashes(path) : path;
    }

    private static bool HasEscapedSlash(string path) =>
        path.Contains('\\', StringComparison.Ordinal)
        || path.Contains("%2F", StringComparison.OrdinalIgnoreCase)
        || path.Contains("%5C", StringComparison.OrdinalIgnoreCase);

    private static string MergeSlashes(string path)
    {
        var builder = new StringBuilder(path.Length);
        foreach (var c in path)
        {
            if (c != '/' || builder.Length == 0 || builder[^1] != '/')
            {
                builder.Append(c);
            }
        }
        return builder.ToString();
    }

    /// <summary>RFC 3986 §5.2.4 on an absolute path, after repeated slashes are merged.</summary>
    private static string RemoveDotSegments(string path)
    {
        var merged = MergeSlashes(path);
        var output = new List<string>();
        foreach (var segment in merged.TrimStart('/').Split('/'))
        {
            if (segment == "..")
            {
                if (output.Count > 0)
                {
                    output.RemoveAt(output.Count - 1);
                }
            }
            else if (segment is not ("." or ""))
            {
                output.Add(segment);
            }
        }
        // A trailing '/', "." or ".." leaves a directory: keep its slash, as RFC 3986 does.
        var directory = merged.EndsWith('/') || merged.EndsWith("/.", StringComparison.Ordinal) || merged.EndsWith("/..", StringComparison.Ordinal);
        return "/" + string.Join('/', output) + (directory && output.Count > 0 ? "/" : "");
    }
}
