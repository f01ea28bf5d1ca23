using ZeroTrustMesh.ControlPlane.Config;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// Which trust bundle the sidecars follow, across every control-plane replica: the CA rotation's steps that wait for
/// sidecars (<see cref="CaRotation"/>) and <c>ztmctl ca status</c> read it. A sidecar's config stream reaches one
/// replica, and the leader takes the steps; so with several replicas each one reports its own sidecars.
/// Standalone there is one replica and its sessions are all there is (<see cref="LocalBundleFollowers"/>); in
/// Kubernetes each replica publishes a report in a ConfigMap of its own (<see cref="ConfigMapBundleFollowers"/>).
/// </summary>
internal interface IBundleFollowers
{
    /// <summary>Where the reports are, for messages.</summary>
    string Location { get; }

    /// <summary>
    /// What every live replica reports now, this replica's own sidecars as they are in memory. Never throws: what could
    /// not be read is <see cref="BundleFollowers.Problem"/>, which holds every step that waits for sidecars.
    /// </summary>
    BundleFollowers Read();
}

/// <summary>
/// One sidecar's config stream as the replica it reached reports it: the trust bundle it follows (as its last answer
/// said), when it last answered, and the certificate it holds.
/// </summary>
/// <param name="Replica">The replica whose report this is (the reader sets it from the report it read).</param>
internal sealed record SidecarReport(
    string SpiffeId,
    bool Connected,
    ulong BundleSequence,
    DateTimeOffset LastSeen,
    string CertificateSerial,
    DateTimeOffset CertificateExpiresAt,
    string SignerKeyId,
    string Replica = "")
{
    public static SidecarReport Of(SidecarSession session, string replica) => new(
        session.Id.Value, session.Connected, session.BundleSequence, session.LastSeen, session.Current.Serial, session.Current.NotAfter,
        session.Current.SignerKeyId, replica);

    /// <summary>
    /// Whether a step that waits for sidecars counts it: connected, or not connected but holding a live certificate (it
    /// may come back with a bundle that does not hold the new root).
    /// </summary>
    public bool Counts(DateTimeOffset now) => Connected || CertificateExpiresAt > now;
}

/// <summary>What one replica reports: the trust bundle it serves its sidecars, and those sidecars (every open stream, and the last one of each identity that has none open).</summary>
/// <param name="Problem">Why the report cannot be counted (it does not parse); null when it can.</param>
internal sealed record ReplicaReport(string Replica, ulong BundleSequence, DateTimeOffset RefreshedAt, IReadOnlyList<SidecarReport> Sidecars, string? Problem = null);

/// <summary>A report that was not refreshed within the bound: its replica stopped, and it is ignored.</summary>
internal sealed record StaleReport(string Replica, string Location, DateTimeOffset UnchangedSince);

/// <summary>The reports of the live replicas, this one's first; the stale ones beside them; and what could not be read.</summary>
/// <param name="Self">This replica.</param>
/// <param name="Problem">Why the other replicas' reports could not be read (the API is unreachable); null when they were.</param>
internal sealed record BundleFollowers(string Self, IReadOnlyList<ReplicaReport> Replicas, IReadOnlyList<StaleReport> Stale, string? Problem = null)
{
    /// <summary>Every sidecar the live replicas report, each once (<see cref="Merge"/>), in SPIFFE ID order.</summary>
    public IReadOnlyList<SidecarReport> Sidecars { get; } = Merge(Replicas);

    /// <summary>
    /// The union of the replicas' reports, a sidecar counted once:
    /// 1. an identity with a connected stream on any replica is those connected streams (replicas of a workload share an
    ///    identity, and each stream is a sidecar of its own), one per certificate serial, the newest report of it;
    /// 2. an identity with none connected is its newest report (a sidecar that moved, or went down, is where it was last seen).
    /// </summary>
    public static IReadOnlyList<SidecarReport> Merge(IEnumerable<ReplicaReport> replicas)
    {
        var merged = new List<SidecarReport>();
        foreach (var identity in replicas.Where(r => r.Problem is null).SelectMany(r => r.Sidecars).GroupBy(s => s.SpiffeId, StringComparer.Ordinal))
        {
            var connected = identity.Where(s => s.Connected).ToList();
            if (connected.Count > 0)
            {
                merged.AddRange(connected.GroupBy(s => s.CertificateSerial, StringComparer.Ordinal).Select(same => same.MaxBy(s => s.LastSeen)!));
            }
            else
            {
                merged.Add(identity.MaxBy(s => s.LastSeen)!);
            }
        }
        return [.. merged.OrderBy(s => s.SpiffeId, StringComparer.Ordinal).ThenBy(s => s.Replica, StringComparer.Ordinal)];
    }
}

/// <summary>One process, one replica: its config streams are every sidecar there is.</summary>
internal sealed class LocalBundleFollowers(ConfigDistributor sessions, ConfigStore config, Coordination.IReplicaLeadership leadership, TimeProvider time) : IBundleFollowers
{
    public string Location => "this process's config streams";

    public BundleFollowers Read() => new(leadership.Identity, [Report(sessions, config, leadership.Identity, time.GetUtcNow())], []);

    /// <summary>This replica's report: its sessions, and the bundle its config carries.</summary>
    public static ReplicaReport Report(ConfigDistributor sessions, ConfigStore config, string replica, DateTimeOffset now) =>
        new(replica, config.Current.Bundle.Sequence, now, [.. sessions.Sessions.Select(s => SidecarReport.Of(s, replica))]);
}
