using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary><c>revocations.json</c> in the data directory: 0600, replaced atomically, read once at start.</summary>
internal sealed class RevocationFile(ControlPlaneOptions options)
{
    public string Path { get; } = System.IO.Path.Combine(options.DataDir, "revocations.json");

    public RevocationList Load()
    {
        if (!File.Exists(Path))
        {
            return RevocationList.Empty;
        }
        var records = JsonSerializer.Deserialize(File.ReadAllText(Path), RevocationJson.Default.ListRevocationRecord)
            ?? throw new InvalidDataException($"{Path} is empty");
        return new RevocationList(records.Select(r => new Revocation(
            r.Serial, r.SpiffeId is null ? null : SpiffeId.Parse(r.SpiffeId), r.IssuedBefore, r.RevokedAt, r.ExpiresAt, r.Reason ?? "")));
    }

    public void Save(RevocationList list) =>
        Pem.WriteSecret(Path, JsonSerializer.Serialize(
            [.. list.Entries.Select(e => new RevocationRecord(e.Serial, e.Id?.Value, e.IssuedBefore, e.RevokedAt, e.ExpiresAt, e.Reason))],
            RevocationJson.Default.ListRevocationRecord));
}

internal sealed record RevocationRecord(string? Serial, string? SpiffeId, DateTimeOffset? IssuedBefore, DateTimeOffset RevokedAt, DateTimeOffset ExpiresAt, string? Reason);

[JsonSerializable(typeof(List<RevocationRecord>))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class RevocationJson : JsonSerializerContext;

/// <summary>The revocations in force now (what renewals are checked against).</summary>
internal delegate RevocationList CurrentRevocations();

/// <summary>An operator's revocation request that cannot be carried out; the message says why.</summary>
internal sealed class RevocationRefusedException(string message) : Exception(message);

/// <summary>
/// Revokes certificates for operators and drops entries once they cannot matter:
/// 1. by serial: the entry lives until the certificate expires — its notAfter when a connected sidecar presents it,
///    otherwise the longest an SVID can live (<see cref="ControlPlaneOptions.MaxSvidTtl"/>) from now;
/// 2. by SPIFFE ID: every certificate of that workload issued until now, until the longest SVID lifetime from now;
/// 3. each change is a new config version (audited, pushed to every sidecar); a timer prunes expired entries the same way.
/// </summary>
internal sealed class Revoker : IDisposable
{
    public const int MaxReasonLength = 256;

    private readonly PolicyStore _store;
    private readonly ConfigDistributor _distributor;
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<Revoker> _logger;
    private readonly ITimer _prune;

    public Revoker(PolicyStore store, ConfigDistributor distributor, ControlPlaneOptions options, TimeProvider time, ILogger<Revoker> logger)
    {
        _store = store;
        _distributor = distributor;
        _options = options;
        _time = time;
        _logger = logger;
        _prune = time.CreateTimer(_ => Prune(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        store.Changed += Schedule;
        Prune(); // entries that expired while the control plane was down
        Schedule(store.Current);
    }

    /// <summary>The revocations in force and the version that carries them.</summary>
    public PolicyState State => _store.Current;

    /// <summary>Revokes what the request names; returns the entries (new or already in force) and the resulting state.</summary>
    /// <exception cref="RevocationRefusedException">A malformed serial or SPIFFE ID, a non-workload ID, or neither given.</exception>
    public (PolicyState State, IReadOnlyList<Revocation> Entries, bool Changed) Revoke(string? serial, string? spiffeId, string? reason, string actor)
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
        var now = _time.GetUtcNow();
        var entries = new List<Revocation>();
        if (!string.IsNullOrWhiteSpace(serial))
        {
            if (!Revocation.TryNormalizeSerial(serial, out var normalized, out var error))
            {
                throw new RevocationRefusedException(error);
            }
            // A connected sidecar presenting that certificate tells when it expires; otherwise assume the longest SVID.
            var presented = _distributor.Sessions.FirstOrDefault(s => s.Serial == normalized);
            entries.Add(Revocation.ForSerial(normalized, now, presented?.CertificateExpiresAt ?? now + ControlPlaneOptions.MaxSvidTtl, reason));
        }
        if (!string.IsNullOrWhiteSpace(spiffeId))
        {
            if (!SpiffeId.TryParse(spiffeId.Trim(), out var id, out var error))
            {
                throw new RevocationRefusedException($"'{spiffeId}' is not a SPIFFE ID: {error}");
            }
            if (id.TrustDomain != _options.TrustDomain)
            {
                throw new RevocationRefusedException($"'{id}' is not in this mesh's trust domain '{_options.TrustDomain}'");
            }
            if (!id.TryGetWorkload(out _, out _))
            {
                throw new RevocationRefusedException($"'{id}' is not a workload identity (spiffe://{_options.TrustDomain}/ns/<namespace>/sa/<service-account>)");
            }
            var entry = Revocation.ForIdentity(id, now, DateTimeOffset.MinValue, reason);
            entries.Add(entry with { ExpiresAt = entry.IssuedBefore!.Value + ControlPlaneOptions.MaxSvidTtl });
        }

        var changed = false;
        var state = _store.ReviseRevocations(list =>
        {
            var next = entries.Aggregate(list, (l, e) => l.With(e));
            changed = !ReferenceEquals(next, list);
            return (next, [.. entries.Select(e => e.Subject)]);
        }, "revoke", actor, reason);
        foreach (var entry in entries)
        {
            ControlPlaneLog.CertificateRevoked(_logger, entry.Subject, entry.ExpiresAt, actor, state.Version, reason);
        }
        return (state, entries, changed);
    }

    /// <summary>Drops the entries whose certificates have all expired; a new version if any was dropped.</summary>
    public void Prune()
    {
        IReadOnlyList<Revocation> dropped = [];
        var state = _store.ReviseRevocations(list => (list.Prune(_time.GetUtcNow(), out dropped), [.. dropped.Select(d => d.Subject)]), "expire", "controlplane", null);
        if (dropped.Count > 0)
        {
            ControlPlaneLog.RevocationsExpired(_logger, dropped.Count, state.Version);
        }
        Schedule(state);
    }

    private void Schedule(PolicyState state)
    {
        if (state.Revocations.NextExpiry is not { } next)
        {
            _prune.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            return;
        }
        // At most an hour ahead, so a wall-clock jump cannot postpone pruning for long.
        var due = next - _time.GetUtcNow();
        _prune.Change(due < TimeSpan.Zero ? TimeSpan.Zero : due > TimeSpan.FromHours(1) ? TimeSpan.FromHours(1) : due, Timeout.InfiniteTimeSpan);
    }

    public void Dispose()
    {
        _store.Changed -= Schedule;
        _prune.Dispose();
    }
}
