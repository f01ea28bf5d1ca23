namespace ZeroTrustMesh.ControlPlane.Discovery;

/// <summary>
/// Path segments that are identifiers by their shape alone, whatever else was seen beside them: numbers, UUIDs, long hex
/// strings (commit SHAs, digests) and long mixed letter-and-digit tokens. Everything else is a word until the counts say
/// otherwise (<see cref="PathInventory"/>). Version segments (<c>v1</c>, <c>v2.1</c>) and short word-plus-number tokens
/// (<c>oauth2</c>, <c>sha256</c>, <c>x509</c>) are words: they name the API, not an object.
/// </summary>
internal static class SegmentShape
{
    /// <summary>The one template segment every parameter is written as before it is named.</summary>
    public const string Parameter = "{}";

    /// <summary>Whether <paramref name="segment"/> is an identifier by its shape.</summary>
    public static bool IsIdentifier(ReadOnlySpan<char> segment)
    {
        if (segment.IsEmpty)
        {
            return false;
        }
        int digits = 0, letters = 0, hexLetters = 0, other = 0;
        foreach (var c in segment)
        {
            if (char.IsAsciiDigit(c))
            {
                digits++;
            }
            else if (char.IsAsciiLetter(c))
            {
                letters++;
                if (char.IsAsciiHexDigit(c))
                {
                    hexLetters++;
                }
            }
            else
            {
                other++;
            }
        }
        if (digits == segment.Length)
        {
            return true; // 42, 1700000000
        }
        if (segment.Length == 36 && Guid.TryParseExact(segment, "D", out _))
        {
            return true;
        }
        if (other == 0 && letters == hexLetters && digits > 0 && letters > 0 && segment.Length >= 16)
        {
            return true; // a commit SHA, a digest, a hex token
        }
        if (IsVersion(segment))
        {
            return false;
        }
        // A token: letters and at least two digits, long enough not to be a word with a number (oauth2, sha256, ipv4),
        // and with letters and digits mixed within one part: "users-28-day" and "release-2024" are words and numbers
        // joined (a slug, for the counts to judge), "8a61f9b3" and "Iv1.8a61f9b3a7aba766" are tokens.
        return segment.Length >= 8 && digits >= 2 && letters > 0 && HasMixedPart(segment);
    }

    private static bool HasMixedPart(ReadOnlySpan<char> segment)
    {
        foreach (var range in segment.SplitAny("-_.~:"))
        {
            var part = segment[range];
            if (part.ContainsAnyInRange('0', '9') && (part.ContainsAnyInRange('a', 'z') || part.ContainsAnyInRange('A', 'Z')))
            {
                return true;
            }
        }
        return false;
    }

    private static bool IsVersion(ReadOnlySpan<char> segment)
    {
        if (segment.Length < 2 || (segment[0] is not ('v' or 'V')) || !char.IsAsciiDigit(segment[1]))
        {
            return false;
        }
        foreach (var c in segment[1..])
        {
            if (!char.IsAsciiDigit(c) && c != '.')
            {
                return false;
            }
        }
        return true;
    }
}
