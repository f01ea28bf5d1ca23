using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Authorization;

namespace ZeroTrustMesh.Policy.Validation;

internal enum PatternKind : byte
{
    Exact,
    Prefix,
    Suffix,
    Any,

    /// <summary>A path template: <c>{*}</c> for one segment, <c>{**}</c> last for one or more (<see cref="PathTemplate"/>).</summary>
    Template,
}

/// <summary>
/// A compiled string pattern: exact, <c>prefix*</c>, <c>*suffix</c> or <c>*</c>. One '*' at most, at either end,
/// because a general glob cannot be indexed and is easy to get wrong in a security rule.
/// </summary>
internal readonly record struct StringPattern(PatternKind Kind, string Text)
{
    public bool Matches(ReadOnlySpan<char> value) => Kind switch
    {
        PatternKind.Exact => value.SequenceEqual(Text),
        PatternKind.Prefix => value.StartsWith(Text, StringComparison.Ordinal),
        PatternKind.Suffix => value.EndsWith(Text, StringComparison.Ordinal),
        PatternKind.Template => PathTemplate.Matches(Text, value),
        _ => true,
    };

    /// <summary>A path pattern: as <see cref="Parse"/>, and a path with <c>{*}</c> or <c>{**}</c> is a template. Validate it first (<see cref="PolicySyntax.ValidatePath"/>).</summary>
    public static StringPattern ParsePath(string path) =>
        PathTemplate.IsTemplate(path) ? new(PatternKind.Template, path) : Parse(path);

    public static StringPattern Parse(string value)
    {
        if (value == "*")
        {
            return new(PatternKind.Any, "");
        }
        if (value.Length > 1 && value[^1] == '*')
        {
            return new(PatternKind.Prefix, value[..^1]);
        }
        if (value.Length > 1 && value[0] == '*')
        {
            return new(PatternKind.Suffix, value[1..]);
        }
        return new(PatternKind.Exact, value);
    }

    /// <summary>A value pattern for headers and claims: any text, with at most one '*' at either end.</summary>
    public static string? ValidateValue(string value)
    {
        if (value.Length == 0)
        {
            return "an empty value never matches; use '*' to require presence";
        }
        var star = value.IndexOf('*', StringComparison.Ordinal);
        if (star >= 0 && value != "*" && !(star == 0 && value.IndexOf('*', 1) < 0) && !(star == value.Length - 1))
        {
            return $"'{value}' has a '*' in the middle; only 'prefix*', '*suffix' or '*' are supported";
        }
        return null;
    }
}

internal static class PolicySyntax
{
    public const int MaxPortNumber = 65535;

    /// <summary>The methods a rule may name, in bit order for <see cref="MethodBit"/>.</summary>
    public static readonly string[] HttpMethods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];

    /// <summary>The request method's bit; bit 31 for any other method, which only '*' (or no methods) matches.</summary>
    public static uint MethodBit(ReadOnlySpan<char> method) => method switch
    {
        "GET" => 1u << 0,
        "HEAD" => 1u << 1,
        "POST" => 1u << 2,
        "PUT" => 1u << 3,
        "DELETE" => 1u << 4,
        "PATCH" => 1u << 5,
        "OPTIONS" => 1u << 6,
        "CONNECT" => 1u << 7,
        "TRACE" => 1u << 8,
        _ => 1u << 31,
    };

    public const uint AllMethods = uint.MaxValue;

    public static string? ValidateMethod(string method)
    {
        if (method == "*" || Array.IndexOf(HttpMethods, method) >= 0)
        {
            return null;
        }
        var upper = method.ToUpperInvariant();
        return Array.IndexOf(HttpMethods, upper) >= 0
            ? $"'{method}' must be upper-case: '{upper}'"
            : $"'{method}' is not an HTTP method; use one of {string.Join(", ", HttpMethods)} or '*'";
    }

    /// <summary>
    /// A path pattern: <c>/exact</c>, <c>/prefix/*</c>, <c>*.suffix</c>, <c>*</c> or, with <paramref name="templates"/>, a
    /// template (<c>{*}</c>, <c>{**}</c>); no query, fragment or whitespace. Without templates a brace is literal text.
    /// </summary>
    public static string? ValidatePath(string path) => ValidatePath(path, templates: true);

    /// <inheritdoc cref="ValidatePath(string)"/>
    public static string? ValidatePath(string path, bool templates)
    {
        if (path.Length == 0)
        {
            return "a path must not be empty; use '*' for any path";
        }
        if (path == "*")
        {
            return null;
        }
        foreach (var c in path)
        {
            if (char.IsWhiteSpace(c) || char.IsControl(c))
            {
                return $"'{path}' contains whitespace or a control character";
            }
            if (c is '?' or '#')
            {
                return $"'{path}' contains '{c}'; paths are matched without the query string or fragment";
            }
        }
        if (templates && path.AsSpan().IndexOfAny('{', '}') >= 0)
        {
            return PathTemplate.Validate(path);
        }
        var stars = path.AsSpan().Count('*');
        if (stars > 1 || (stars == 1 && path[0] != '*' && path[^1] != '*'))
        {
            return $"'{path}' is not a path pattern: use an exact path '/a/b', a prefix '/a/*', a suffix '*.json', a template '/a/{{*}}/c' or '/a/{{**}}', or '*'";
        }
        if (path[0] != '*' && path[0] != '/')
        {
            return $"'{path}' must start with '/' (or '*' for a suffix pattern)";
        }
        return null;
    }

    /// <summary>
    /// A principal: a SPIFFE ID, <c>*</c>, or a SPIFFE ID prefix ending in <c>/*</c> (every ID under that path, e.g.
    /// a whole namespace <c>spiffe://cluster.local/ns/shop/*</c>).
    /// </summary>
    public static string? ValidatePrincipal(string principal)
    {
        if (principal == "*")
        {
            return null;
        }
        var id = principal.EndsWith("/*", StringComparison.Ordinal) ? principal[..^2] : principal;
        if (id.Contains('*', StringComparison.Ordinal))
        {
            return $"'{principal}' is not a SPIFFE ID: '*' is only allowed alone or as a trailing '/*'";
        }
        return SpiffeId.TryParse(id, out _, out var error) ? null : $"'{principal}' is not a SPIFFE ID: {error}";
    }

    /// <summary>A JWT request principal <c>issuer/subject</c>, <c>issuer/*</c> or <c>*</c>; split at the last '/'.</summary>
    public static bool TryParseRequestPrincipal(string value, out string issuer, out string subject)
    {
        issuer = subject = "";
        if (value == "*")
        {
            issuer = subject = "*";
            return true;
        }
        var slash = value.LastIndexOf('/');
        if (slash <= 0 || slash == value.Length - 1)
        {
            return false;
        }
        issuer = value[..slash];
        subject = value[(slash + 1)..];
        return !issuer.Contains('*', StringComparison.Ordinal) && (subject == "*" || !subject.Contains('*', StringComparison.Ordinal));
    }

    public static string? ValidateNamespace(string value) =>
        value == "*" || IsDnsLabel(value) ? null : $"'{value}' is not a namespace: use lower-case letters, digits and '-', at most 63 characters";

    /// <summary>Kubernetes DNS-1123 label: namespaces and service names.</summary>
    public static bool IsDnsLabel(string value) =>
        value.Length is > 0 and <= 63 && IsAlphanumeric(value[0]) && IsAlphanumeric(value[^1]) && value.All(c => IsAlphanumeric(c) || c == '-');

    /// <summary>Kubernetes DNS-1123 subdomain: resource names.</summary>
    public static bool IsDnsSubdomain(string value) =>
        value.Length is > 0 and <= 253 && IsAlphanumeric(value[0]) && IsAlphanumeric(value[^1])
        && value.All(c => IsAlphanumeric(c) || c is '-' or '.');

    private static bool IsAlphanumeric(char c) => c is (>= 'a' and <= 'z') or (>= '0' and <= '9');

    public static bool IsHeaderName(ReadOnlySpan<char> name)
    {
        if (name.IsEmpty)
        {
            return false;
        }
        foreach (var c in name)
        {
            // RFC 9110 token characters.
            if (!(char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c)))
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>An IPv4 or IPv6 network, compared as integers so that matching needs no allocation.</summary>
internal readonly record struct IpRange(bool IsV6, UInt128 Network, UInt128 Mask)
{
    public static bool TryParse(string value, out IpRange range, out string? error)
    {
        range = default;
        error = null;
        var slash = value.IndexOf('/', StringComparison.Ordinal);
        var addressText = slash < 0 ? value : value[..slash];
        if (!IPAddress.TryParse(addressText, out var address) || addressText.Contains('%', StringComparison.Ordinal))
        {
            error = $"'{value}' is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.168.1.7, fd00::/8)";
            return false;
        }
        var isV6 = address.AddressFamily == AddressFamily.InterNetworkV6;
        var bits = isV6 ? 128 : 32;
        var prefix = bits;
        if (slash >= 0 && (!int.TryParse(value.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out prefix) || prefix > bits))
        {
            error = $"'{value}' has an invalid prefix length; it must be 0 to {bits}";
            return false;
        }
        var mask = prefix == 0 ? UInt128.Zero : UInt128.MaxValue << (128 - prefix);
        var network = ToInteger(address);
        if ((network & ~mask) != UInt128.Zero)
        {
            error = $"'{value}' has host bits set after the /{prefix} prefix; write the network address";
            return false;
        }
        range = new IpRange(isV6, network, mask);
        return true;
    }

    /// <summary>IPv4-mapped IPv6 addresses (<c>::ffff:a.b.c.d</c>, as a dual-stack socket reports them) match IPv4 ranges.</summary>
    public bool Contains(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out var written))
        {
            return false;
        }
        bool addressIsV6 = written == 16;
        if (addressIsV6 && !IsV6 && address.IsIPv4MappedToIPv6)
        {
            bytes[12..16].CopyTo(bytes);
            written = 4;
            addressIsV6 = false;
        }
        if (addressIsV6 != IsV6)
        {
            return false;
        }
        return (FromBytes(bytes[..written]) & Mask) == Network;
    }

    private static UInt128 ToInteger(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out var written);
        return FromBytes(bytes[..written]);
    }

    /// <summary>Left-aligned in 128 bits, so one mask shape serves both families.</summary>
    private static UInt128 FromBytes(ReadOnlySpan<byte> bytes)
    {
        UInt128 value = 0;
        for (var i = 0; i < 16; i++)
        {
            value = (value << 8) | (i < bytes.Length ? bytes[i] : (byte)0);
        }
        return value;
    }
}

/// <summary>A daily window <c>HH:mm-HH:mm</c> in minutes since midnight; end before start crosses midnight.</summary>
internal readonly record struct TimeWindow(int Start, int End)
{
    public static bool TryParse(string value, out TimeWindow window)
    {
        window = default;
        var dash = value.IndexOf('-', StringComparison.Ordinal);
        if (dash < 0 || !TryParseTime(value.AsSpan(0, dash), out var start) || !TryParseTime(value.AsSpan(dash + 1), out var end) || start == end)
        {
            return false;
        }
        window = new TimeWindow(start, end);
        return true;
    }

    private static bool TryParseTime(ReadOnlySpan<char> text, out int minutes)
    {
        minutes = 0;
        text = text.Trim();
        if (text is "24:00")
        {
            minutes = 24 * 60;
            return true;
        }
        if (text.Length != 5 || text[2] != ':'
            || !int.TryParse(text[..2], NumberStyles.None, CultureInfo.InvariantCulture, out var h)
            || !int.TryParse(text[3..], NumberStyles.None, CultureInfo.InvariantCulture, out var m)
            || h > 23 || m > 59)
        {
            return false;
        }
        minutes = (h * 60) + m;
        return true;
    }

    public static bool TryParseDay(string value, out DayOfWeek day)
    {
        day = value.ToUpperInvariant() switch
        {
            "MON" or "MONDAY" => DayOfWeek.Monday,
            "TUE" or "TUESDAY" => DayOfWeek.Tuesday,
            "WED" or "WEDNESDAY" => DayOfWeek.Wednesday,
            "THU" or "THURSDAY" => DayOfWeek.Thursday,
            "FRI" or "FRIDAY" => DayOfWeek.Friday,
            "SAT" or "SATURDAY" => DayOfWeek.Saturday,
            "SUN" or "SUNDAY" => DayOfWeek.Sunday,
            _ => (DayOfWeek)(-1),
        };
        return day >= 0;
    }

    public static bool TryFindTimeZone(string? id, out TimeZoneInfo zone)
    {
        zone = TimeZoneInfo.Utc;
        if (string.IsNullOrEmpty(id) || id == "UTC")
        {
            return true;
        }
        if (TimeZoneInfo.TryFindSystemTimeZoneById(id, out var found))
        {
            zone = found;
            return true;
        }
        return false;
    }
}

/// <summary>A parsed <c>when[].key</c>.</summary>
internal enum ConditionKind
{
    Header,
    Claim,
    SourceIp,
    Time,
}

internal static class ConditionKeys
{
    public const string SourceIp = "source.ip";
    public const string RequestTime = "request.time";
    private const string HeaderPrefix = "request.headers[";
    private const string ClaimPrefix = "request.auth.claims[";

    public static bool TryParse(string key, out ConditionKind kind, out string name)
    {
        name = "";
        kind = default;
        switch (key)
        {
            case SourceIp:
                kind = ConditionKind.SourceIp;
                return true;
            case RequestTime:
                kind = ConditionKind.Time;
                return true;
        }
        if (TryBracket(key, HeaderPrefix, out name) && PolicySyntax.IsHeaderName(name))
        {
            kind = ConditionKind.Header;
            name = name.ToLowerInvariant(); // header names are case-insensitive; accessors get them lower-case
            return true;
        }
        if (TryBracket(key, ClaimPrefix, out name) && !name.Contains(']', StringComparison.Ordinal) && !name.Contains('[', StringComparison.Ordinal))
        {
            kind = ConditionKind.Claim;
            return true;
        }
        return false;
    }

    private static bool TryBracket(string key, string prefix, out string name)
    {
        name = "";
        if (!key.StartsWith(prefix, StringComparison.Ordinal) || !key.EndsWith(']') || key.Length == prefix.Length + 1)
        {
            return false;
        }
        name = key[prefix.Length..^1];
        return true;
    }

    public const string Supported =
        "request.headers[<name>], request.auth.claims[<name>], source.ip or request.time";
}
