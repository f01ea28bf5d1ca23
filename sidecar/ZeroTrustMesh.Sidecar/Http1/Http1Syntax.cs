using System.Buffers;

namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>The character classes of RFC 9110/9112 the framing checks against, as lookup sets.</summary>
internal static class Http1Syntax
{
    /// <summary>tchar: what a method and a field name are made of.</summary>
    public static readonly SearchValues<byte> Token = SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    public static readonly SearchValues<byte> HexDigits = SearchValues.Create("0123456789ABCDEFabcdef"u8);

    /// <summary>
    /// Bytes a request target never holds: controls, space, DEL, and any byte above 0x7F (Kestrel answers 400 to raw
    /// non-ASCII in the target, e.g. UTF-8 'é' in the path: found by the differential test, seed aaQKWGMkOM3a).
    /// </summary>
    public static readonly SearchValues<byte> NotInTarget = SearchValues.Create([.. Controls(includeTab: true, includeSpace: true), .. Enumerable.Range(0x80, 0x80).Select(b => (byte)b)]);

    /// <summary>Bytes a field value never holds: NUL, CR, LF (Kestrel's rule: other bytes pass, obs-text included).</summary>
    public static readonly SearchValues<byte> NotInFieldValue = SearchValues.Create([0x00, (byte)'\r', (byte)'\n']);

    /// <summary>Host: reg-name, IPv4 or a bracketed IPv6 literal, then an optional port (RFC 3986 §3.2.2).</summary>
    public static readonly SearchValues<byte> HostChars = SearchValues.Create("!$&'()*+,-.;=_~%0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    private static readonly SearchValues<byte> Ipv6Chars = SearchValues.Create(":.0123456789ABCDEFabcdef"u8);

    private static readonly SearchValues<byte> Digits = SearchValues.Create("0123456789"u8);

    public static bool IsOws(byte b) => b is (byte)' ' or (byte)'\t';

    public static ReadOnlySpan<byte> TrimOws(ReadOnlySpan<byte> value)
    {
        var start = 0;
        while (start < value.Length && IsOws(value[start]))
        {
            start++;
        }
        var end = value.Length;
        while (end > start && IsOws(value[end - 1]))
        {
            end--;
        }
        return value[start..end];
    }

    /// <summary>1*DIGIT into a non-negative long, refusing overflow (Content-Length).</summary>
    public static bool TryParseDecimal(ReadOnlySpan<byte> digits, out long value)
    {
        value = 0;
        if (digits.IsEmpty)
        {
            return false;
        }
        foreach (var b in digits)
        {
            if (b is < (byte)'0' or > (byte)'9' || value > (long.MaxValue - (b - '0')) / 10)
            {
                return false;
            }
            value = value * 10 + (b - '0');
        }
        return true;
    }

    /// <summary>The Host header's syntax: empty (allowed by RFC 9112 §3.2 when the target has no authority), a name or
    /// address, a bracketed IPv6 literal, each with an optional numeric port.</summary>
    public static bool IsValidHost(ReadOnlySpan<byte> host)
    {
        if (host.IsEmpty)
        {
            return true;
        }
        ReadOnlySpan<byte> rest;
        if (host[0] == (byte)'[')
        {
            var close = host.IndexOf((byte)']');
            if (close < 2 || host[1..close].ContainsAnyExcept(Ipv6Chars))
            {
                return false;
            }
            rest = host[(close + 1)..];
        }
        else
        {
            var colon = host.IndexOf((byte)':');
            var name = colon < 0 ? host : host[..colon];
            if (name.IsEmpty || name.IndexOfAnyExcept(HostChars) >= 0)
            {
                return false;
            }
            rest = colon < 0 ? [] : host[colon..];
        }
        return rest.IsEmpty || (rest[0] == (byte)':' && !rest[1..].ContainsAnyExcept(Digits));
    }

    private static byte[] Controls(bool includeTab, bool includeSpace)
    {
        var bytes = new List<byte>();
        for (var b = 0; b < 0x20; b++)
        {
            if (b != '\t' || includeTab)
            {
                bytes.Add((byte)b);
            }
        }
        if (includeSpace)
        {
            bytes.Add((byte)' ');
        }
        bytes.Add(0x7F);
        return [.. bytes];
    }
}
