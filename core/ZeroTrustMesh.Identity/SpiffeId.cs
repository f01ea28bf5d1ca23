using System.Diagnostics.CodeAnalysis;

namespace ZeroTrustMesh.Identity;

/// <summary>
/// A SPIFFE ID (<c>spiffe://trust-domain/path</c>) validated per the SPIFFE ID specification:
/// lowercase scheme, a trust domain of <c>[a-z0-9.-_]</c>, path segments of <c>[a-zA-Z0-9.-_]</c>
/// with no empty, <c>.</c> or <c>..</c> segment, and no port, userinfo, query or fragment
/// (all of which the character rules exclude).
/// </summary>
public readonly struct SpiffeId : IEquatable<SpiffeId>
{
    public const string Scheme = "spiffe://";
    public const int MaxLength = 2048;
    public const int MaxTrustDomainLength = 255;
    public const string DefaultTrustDomain = "cluster.local";

    private readonly string? _value;
    private readonly int _pathStart;

    private SpiffeId(string value, int pathStart)
    {
        _value = value;
        _pathStart = pathStart;
    }

    /// <summary>The trust domain, e.g. <c>cluster.local</c>.</summary>
    public string TrustDomain => Value[Scheme.Length.._pathStart];

    /// <summary>The path including its leading slash, or empty for a trust domain's own ID.</summary>
    public string Path => Value[_pathStart..];

    public string Value => _value ?? throw new InvalidOperationException("Uninitialized SpiffeId.");

    public bool IsEmpty => _value is null;

    /// <summary>The workload identity <c>spiffe://td/ns/NS/sa/SA</c>.</summary>
    public static SpiffeId ForWorkload(string trustDomain, string @namespace, string serviceAccount) =>
        Parse($"{Scheme}{trustDomain}/ns/{@namespace}/sa/{serviceAccount}");

    /// <summary>An identity of the mesh itself, e.g. <c>spiffe://td/ztm/operator</c>.</summary>
    public static SpiffeId ForMesh(string trustDomain, string component) => Parse($"{Scheme}{trustDomain}/ztm/{component}");

    /// <summary>The trust domain's own ID, <c>spiffe://td</c>; used to validate a trust domain name.</summary>
    public static SpiffeId ForTrustDomain(string trustDomain) => Parse(Scheme + trustDomain);

    /// <summary>The namespace and service account if this is a workload ID (<c>/ns/NS/sa/SA</c>).</summary>
    public bool TryGetWorkload([NotNullWhen(true)] out string? @namespace, [NotNullWhen(true)] out string? serviceAccount)
    {
        @namespace = serviceAccount = null;
        var segments = Path.Split('/');
        if (segments is not ["", "ns", var ns, "sa", var sa])
        {
            return false;
        }
        (@namespace, serviceAccount) = (ns, sa);
        return true;
    }

    public static SpiffeId Parse(string value) =>
        TryParse(value, out var id, out var error) ? id : throw new FormatException($"Invalid SPIFFE ID '{value}': {error}.");

    public static bool TryParse(string? value, out SpiffeId id) => TryParse(value, out id, out _);

    public static bool TryParse(string? value, out SpiffeId id, [NotNullWhen(false)] out string? error)
    {
        id = default;
        error = Validate(value, out var pathStart);
        if (error is not null)
        {
            return false;
        }
        id = new SpiffeId(value!, pathStart);
        return true;
    }

    private static string? Validate(string? value, out int pathStart)
    {
        pathStart = 0;
        if (string.IsNullOrEmpty(value))
        {
            return "it is empty";
        }
        if (value.Length > MaxLength)
        {
            return $"it is longer than {MaxLength} bytes";
        }
        if (!value.StartsWith(Scheme, StringComparison.Ordinal))
        {
            return "the scheme must be 'spiffe://' (lowercase)";
        }

        var slash = value.IndexOf('/', Scheme.Length);
        pathStart = slash < 0 ? value.Length : slash;
        var trustDomain = value.AsSpan(Scheme.Length, pathStart - Scheme.Length);
        if (trustDomain.IsEmpty)
        {
            return "the trust domain is missing";
        }
        if (trustDomain.Length > MaxTrustDomainLength)
        {
            return $"the trust domain is longer than {MaxTrustDomainLength} characters";
        }
        foreach (var c in trustDomain)
        {
            if (!IsTrustDomainChar(c))
            {
                return c switch
                {
                    ':' => "a port is not allowed",
                    '@' => "userinfo is not allowed",
                    '?' => "a query is not allowed",
                    '#' => "a fragment is not allowed",
                    >= 'A' and <= 'Z' => "the trust domain must be lowercase",
                    _ => $"the trust domain contains '{c}'; only a-z, 0-9, '.', '-' and '_' are allowed",
                };
            }
        }

        var path = value.AsSpan(pathStart);
        while (!path.IsEmpty)
        {
            // path starts with '/': take the segment up to the next '/'.
            path = path[1..];
            var end = path.IndexOf('/');
            var segment = end < 0 ? path : path[..end];
            if (segment.IsEmpty)
            {
                return "the path has an empty segment or a trailing slash";
            }
            if (segment is "." or "..")
            {
                return "the path has a '.' or '..' segment";
            }
            foreach (var c in segment)
            {
                if (!IsPathChar(c))
                {
                    return c switch
                    {
                        '?' => "a query is not allowed",
                        '#' => "a fragment is not allowed",
                        '%' => "percent-encoding is not allowed",
                        _ => $"the path contains '{c}'; only a-z, A-Z, 0-9, '.', '-' and '_' are allowed",
                    };
                }
            }
            path = end < 0 ? default : path[end..];
        }
        return null;
    }

    private static bool IsTrustDomainChar(char c) => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_';

    private static bool IsPathChar(char c) => IsTrustDomainChar(c) || c is >= 'A' and <= 'Z';

    public bool Equals(SpiffeId other) => string.Equals(_value, other._value, StringComparison.Ordinal);

    public override bool Equals(object? obj) => obj is SpiffeId other && Equals(other);

    public override int GetHashCode() => _value is null ? 0 : StringComparer.Ordinal.GetHashCode(_value);

    public override string ToString() => _value ?? string.Empty;

    public static bool operator ==(SpiffeId left, SpiffeId right) => left.Equals(right);

    public static bool operator !=(SpiffeId left, SpiffeId right) => !left.Equals(right);
}
