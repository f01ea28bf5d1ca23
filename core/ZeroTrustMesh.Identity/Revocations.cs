using System.Collections.Frozen;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.Identity;

/// <summary>
/// One revoked certificate, or every certificate of one SPIFFE ID issued before a time. Exactly one of
/// <see cref="Serial"/> and <see cref="Id"/> is set. <see cref="ExpiresAt"/> is when every certificate it covers has
/// expired anyway; the entry is dropped then, so the list stays bounded.
/// </summary>
public sealed record Revocation(string? Serial, SpiffeId? Id, DateTimeOffset? IssuedBefore, DateTimeOffset RevokedAt, DateTimeOffset ExpiresAt, string Reason)
{
    /// <summary>
    /// How far the mesh CA backdates notBefore (clock skew between peers), the one definition of it: "issued at" is
    /// notBefore plus this.
    /// </summary>
    public static readonly TimeSpan IssuanceBackdate = TimeSpan.FromSeconds(10);

    /// <summary>Serials have at most 20 octets (RFC 5280 4.1.2.2).</summary>
    public const int MaxSerialHexLength = 40;

    public static Revocation ForSerial(string serial, DateTimeOffset revokedAt, DateTimeOffset expiresAt, string reason) =>
        new(NormalizeSerial(serial), null, null, revokedAt, expiresAt, reason);

    /// <summary>
    /// Every certificate of <paramref name="id"/> issued before <paramref name="revokedAt"/>. notBefore has whole
    /// seconds, so the cut-off is rounded up to the next second: a certificate issued in the same second as the
    /// revocation is revoked too (the safe side), one issued later is not.
    /// </summary>
    public static Revocation ForIdentity(SpiffeId id, DateTimeOffset revokedAt, DateTimeOffset expiresAt, string reason)
    {
        var ticks = revokedAt.UtcTicks;
        var ceiling = new DateTimeOffset(ticks + (TimeSpan.TicksPerSecond - ticks % TimeSpan.TicksPerSecond) % TimeSpan.TicksPerSecond, TimeSpan.Zero);
        return new(null, id, ceiling, revokedAt, expiresAt, reason);
    }

    /// <summary>What the entry covers, as shown to operators: <c>serial 45d3…</c> or <c>spiffe://… issued before …</c>.</summary>
    public string Subject => Serial is not null
        ? $"serial {Serial}"
        : $"{Id} issued before {IssuedBefore!.Value.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)}";

    /// <summary>The entry as a refusal names it: <c>serial 45d3…, at 2026-01-02T03:04:05Z: key leaked</c>.</summary>
    public string Describe() =>
        $"{Subject}, at {RevokedAt.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)}{(Reason.Length > 0 ? $": {Reason}" : "")}";

    /// <summary>Whether this entry covers <paramref name="leaf"/> (whose SPIFFE ID is <paramref name="id"/>).</summary>
    public bool Covers(string normalizedSerial, SpiffeId id, DateTimeOffset notBefore) =>
        Serial is not null
            ? Serial == normalizedSerial
            : Id == id && notBefore + IssuanceBackdate < IssuedBefore!.Value;

    /// <summary>Lowercase hex without leading zeros (<c>00AB:CD</c> and <c>abcd</c> are the same serial).</summary>
    public static bool TryNormalizeSerial(string? text, [NotNullWhen(true)] out string? serial, [NotNullWhen(false)] out string? error)
    {
        serial = null;
        var hex = (text ?? "").Replace(":", "", StringComparison.Ordinal).Trim();
        if (hex.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            hex = hex[2..];
        }
        if (hex.Length == 0)
        {
            error = "the serial is empty";
            return false;
        }
        if (hex.Length > MaxSerialHexLength + 2 || !hex.All(char.IsAsciiHexDigit))
        {
            error = $"'{Truncate(text!)}' is not a certificate serial: expected up to {MaxSerialHexLength} hex digits (as ztmctl status and the issuance log show it)";
            return false;
        }
        hex = hex.TrimStart('0').ToLowerInvariant();
        serial = hex.Length == 0 ? "0" : hex;
        if (serial.Length > MaxSerialHexLength)
        {
            serial = null;
            error = $"'{Truncate(text!)}' is longer than a certificate serial ({MaxSerialHexLength} hex digits)";
            return false;
        }
        error = null;
        return true;
    }

    public static string NormalizeSerial(string serial) =>
        TryNormalizeSerial(serial, out var normalized, out var error) ? normalized : throw new ArgumentException(error, nameof(serial));

    private static string Truncate(string text) => text.Length <= 64 ? text : text[..64] + "…";
}

/// <summary>
/// The revocations in force: immutable, replaced as a whole, looked up at every mTLS handshake and renewal.
/// A lookup is a dictionary probe by serial and one by SPIFFE ID.
/// </summary>
public sealed class RevocationList
{
    public static readonly RevocationList Empty = new([]);

    private readonly FrozenDictionary<string, Revocation> _bySerial;
    private readonly FrozenDictionary<SpiffeId, Revocation> _byId;

    public RevocationList(IEnumerable<Revocation> entries)
    {
        // One entry per serial and per SPIFFE ID: a later revocation of the same ID covers more (a later cut-off).
        var bySerial = new Dictionary<string, Revocation>(StringComparer.Ordinal);
        var byId = new Dictionary<SpiffeId, Revocation>();
        foreach (var entry in entries)
        {
            if (entry.Serial is { } serial)
            {
                bySerial.TryAdd(serial, entry);
            }
            else if (entry.Id is { } id && (!byId.TryGetValue(id, out var other) || other.IssuedBefore < entry.IssuedBefore))
            {
                byId[id] = entry;
            }
        }
        _bySerial = bySerial.ToFrozenDictionary(StringComparer.Ordinal);
        _byId = byId.ToFrozenDictionary();
        Entries = [.. _bySerial.Values.Concat(_byId.Values).OrderBy(e => e.RevokedAt).ThenBy(e => e.Subject, StringComparer.Ordinal)];
    }

    /// <summary>Oldest first.</summary>
    public IReadOnlyList<Revocation> Entries { get; }

    public int Count => Entries.Count;

    /// <summary>The entry that revokes <paramref name="leaf"/>, or null.</summary>
    public Revocation? Find(X509Certificate2 leaf, SpiffeId id) =>
        Entries.Count == 0 ? null : Find(NormalizedSerial(leaf), id, leaf.NotBefore.ToUniversalTime());

    /// <summary>The entry that revokes the certificate with this normalized serial, SPIFFE ID and notBefore, or null.</summary>
    public Revocation? Find(string normalizedSerial, SpiffeId id, DateTimeOffset notBefore)
    {
        if (Entries.Count == 0)
        {
            return null;
        }
        if (_bySerial.TryGetValue(normalizedSerial, out var bySerial))
        {
            return bySerial;
        }
        return _byId.TryGetValue(id, out var byId) && byId.Covers(normalizedSerial, id, notBefore) ? byId : null;
    }

    /// <summary>A list with <paramref name="entry"/> added, or this one if it adds nothing (same serial, or an ID already revoked up to a later time).</summary>
    public RevocationList With(Revocation entry)
    {
        var redundant = entry.Serial is { } serial ? _bySerial.ContainsKey(serial)
            : _byId.TryGetValue(entry.Id!.Value, out var existing) && existing.IssuedBefore >= entry.IssuedBefore;
        return redundant ? this : new RevocationList(Entries.Where(e => entry.Serial is not null || e.Id != entry.Id).Append(entry));
    }

    /// <summary>The list without the entries whose certificates have all expired by <paramref name="now"/>; this one if none has.</summary>
    public RevocationList Prune(DateTimeOffset now, out IReadOnlyList<Revocation> dropped)
    {
        dropped = [.. Entries.Where(e => e.ExpiresAt <= now)];
        return dropped.Count == 0 ? this : new RevocationList(Entries.Where(e => e.ExpiresAt > now));
    }

    /// <summary>When the next entry can be dropped; null for an empty list.</summary>
    public DateTimeOffset? NextExpiry => Entries.Count == 0 ? null : Entries.Min(e => e.ExpiresAt);

    public static string NormalizedSerial(X509Certificate2 leaf)
    {
        var hex = leaf.SerialNumber.TrimStart('0').ToLowerInvariant();
        return hex.Length == 0 ? "0" : hex;
    }
}
