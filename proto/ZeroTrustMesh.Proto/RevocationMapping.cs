using Google.Protobuf.WellKnownTypes;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Proto;

/// <summary>The one mapping between the revocation model (<see cref="Revocation"/>) and its wire form.</summary>
public static class RevocationMapping
{
    public static V1.Revocation ToProto(this Revocation entry) => new()
    {
        Serial = entry.Serial ?? "",
        SpiffeId = entry.Id?.Value ?? "",
        IssuedBefore = entry.IssuedBefore is { } before ? Timestamp.FromDateTimeOffset(before) : null,
        RevokedAt = Timestamp.FromDateTimeOffset(entry.RevokedAt),
        ExpiresAt = Timestamp.FromDateTimeOffset(entry.ExpiresAt),
        Reason = entry.Reason,
    };

    /// <summary>The model of a received entry; throws <see cref="FormatException"/> for one that names neither a serial nor a SPIFFE ID.</summary>
    public static Revocation FromProto(V1.Revocation entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var revokedAt = entry.RevokedAt?.ToDateTimeOffset() ?? DateTimeOffset.MinValue;
        var expiresAt = entry.ExpiresAt?.ToDateTimeOffset() ?? DateTimeOffset.MaxValue;
        if (entry.Serial.Length > 0)
        {
            return Revocation.TryNormalizeSerial(entry.Serial, out var serial, out var error)
                ? new Revocation(serial, null, null, revokedAt, expiresAt, entry.Reason)
                : throw new FormatException($"revocation: {error}");
        }
        if (!SpiffeId.TryParse(entry.SpiffeId, out var id, out var idError))
        {
            throw new FormatException($"revocation: '{entry.SpiffeId}' is not a SPIFFE ID: {idError}");
        }
        if (entry.IssuedBefore is null)
        {
            throw new FormatException($"revocation of '{id}' has no issued_before");
        }
        return new Revocation(null, id, entry.IssuedBefore.ToDateTimeOffset(), revokedAt, expiresAt, entry.Reason);
    }

    public static RevocationList FromProto(IEnumerable<V1.Revocation> entries) => new(entries.Select(FromProto));
}
