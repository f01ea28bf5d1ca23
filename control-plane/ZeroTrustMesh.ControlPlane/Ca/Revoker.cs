using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>An operator's revocation request that cannot be carried out; the message says why.</summary>
internal sealed class RevocationRefusedException(string message) : Exception(message);

/// <summary>
/// Revokes certificates for operators:
/// 1. by serial: the entry lives until the certificate expires — its notAfter when a connected sidecar holds it,
///    otherwise the longest an SVID can live (<see cref="ControlPlaneOptions.MaxSvidTtl"/>) from now;
/// 2. by SPIFFE ID: every certificate of that workload issued until now, until the longest SVID lifetime from now;
/// 3. each change is stored, then becomes a new config version (audited, pushed to every sidecar); the config streams
///    of the certificates it covers are ended. <see cref="RevocationPruner"/> drops entries once they cannot matter.
/// </summary>
internal sealed class Revoker(IRevocationStore store, ConfigStore config, ConfigDistributor distributor, ControlPlaneOptions options, TimeProvider time, ILogger<Revoker> logger)
{
    public const int MaxReasonLength = 256;

    /// <summary>Revokes what the request names; returns the entries (new or already in force) and the config state that carries them.</summary>
    /// <exception cref="RevocationRefusedException">A malformed serial or SPIFFE ID, a non-workload ID, or neither given.</exception>
    public (ConfigState State, IReadOnlyList<Revocation> Entries, bool Changed) Revoke(string? serial, string? spiffeId, string? reason, string actor)
    {
        reason = (reason ?? "").ReplaceLineEndings(" ").Trim();
        if (reason.Length > MaxReasonLength)
        {
            throw new RevocationRefusedException($"the reason is longer than {MaxReasonLength} characters");
        }
        if (string.IsNullOrWhiteSpace(serial) && string.IsNullOrWhiteSpace(spiffeId))
        {
            throw new RevocationRefusedException("name what to revoke: a certificate serial, a SPIFFE ID, or both");
        }
        var now = time.GetUtcNow();
        var entries = new List<Revocation>();
        if (!string.IsNullOrWhiteSpace(serial))
        {
            if (!Revocation.TryNormalizeSerial(serial, out var normalized, out var error))
            {
                throw new RevocationRefusedException(error);
            }
            // A connected sidecar holding that certificate tells when it expires; otherwise assume the longest SVID.
            entries.Add(Revocation.ForSerial(normalized, now, distributor.ExpiryOf(normalized) ?? now + ControlPlaneOptions.MaxSvidTtl, reason));
        }
        if (!string.IsNullOrWhiteSpace(spiffeId))
        {
            if (!SpiffeId.TryParse(spiffeId.Trim(), out var id, out var error))
            {
                throw new RevocationRefusedException($"'{spiffeId}' is not a SPIFFE ID: {error}");
            }
            if (id.TrustDomain != options.TrustDomain)
            {
                throw new RevocationRefusedException($"'{id}' is not in this mesh's trust domain '{options.TrustDomain}'");
            }
            if (!id.TryGetWorkload(out _, out _))
            {
                throw new RevocationRefusedException($"'{id}' is not a workload identity (spiffe://{options.TrustDomain}/ns/<namespace>/sa/<service-account>)");
            }
            var entry = Revocation.ForIdentity(id, now, DateTimeOffset.MinValue, reason);
            entries.Add(entry with { ExpiresAt = entry.IssuedBefore!.Value + ControlPlaneOptions.MaxSvidTtl });
        }

        var changed = store.Revise(list => (entries.Aggregate(list, (l, e) => l.With(e)), [.. entries.Select(e => e.Subject)]), "revoke", actor, reason);
        var state = config.Current;
        foreach (var entry in entries)
        {
            ControlPlaneLog.CertificateRevoked(logger, entry.Subject, entry.ExpiresAt, actor, state.Version, reason);
        }
        return (state, entries, changed);
    }
}
