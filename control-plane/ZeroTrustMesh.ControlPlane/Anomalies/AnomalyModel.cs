using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>Where a caller stands: normal, throttled (a per-caller rate limit) or quarantined (denied).</summary>
internal enum AnomalyState
{
    Normal,
    Throttled,
    Quarantined,
}

/// <summary>What is tracked: one caller (SPIFFE ID, or JWT subject when it has one) of one workload, on one route (or <c>*</c>: all of them).</summary>
internal readonly record struct AnomalyKey(WorkloadRef Workload, string Caller, string Subject, string Route)
{
    public string Principal => Subject.Length > 0 ? $"sub:{Subject}" : Caller;

    public override string ToString() => $"{Principal} -> {Workload} {Route}";
}

/// <summary>
/// Why a caller was judged as it was, at one window: its rate and error ratio against its baseline and the thresholds of
/// the policy that judged it. Rates are requests per minute.
/// </summary>
internal sealed record AnomalyEvidence(
    double RatePerMinute,
    double BaselinePerMinute,
    double ErrorRatio,
    double BaselineErrorRatio,
    long Requests,
    double Share,
    double Multiple,
    int MinimumRate,
    double MaxErrorRatio,
    TimeSpan History);

/// <summary>One transition of one caller, with its evidence: what <c>ztmctl anomalies</c> lists as the past.</summary>
/// <param name="Action">What was done: <c>throttled to 60/min</c>, <c>quarantined</c>, <c>none (DryRun)</c>, …</param>
internal sealed record AnomalyEvent(
    long Id,
    DateTimeOffset At,
    AnomalyKey Key,
    AnomalyState From,
    AnomalyState To,
    string Policy,
    AnomalyMode Mode,
    string Reason,
    string Action,
    AnomalyEvidence Evidence);

/// <summary>A caller that is not normal now: what <c>ztmctl anomalies</c> lists as current.</summary>
internal sealed record AnomalyStatus(AnomalyKey Key, AnomalyState State, DateTimeOffset Since, string Policy, AnomalyMode Mode, AnomalyEvidence Evidence);

/// <summary>One track as stored (<see cref="AnomalyDetector.Export"/>): its state and its baseline's EWMA sums.</summary>
internal sealed record TrackState(
    AnomalyKey Key,
    DateTimeOffset FirstSeen,
    DateTimeOffset LastSeen,
    AnomalyState State,
    DateTimeOffset Since,
    DateTimeOffset? LastAnomalous,
    string Policy,
    AnomalyMode Mode,
    AnomalyEvidence? Evidence,
    double Rate,
    double RateWeight,
    double Errors,
    double ErrorWeight);

/// <summary>The detector's state as stored: tracks (bounded; <paramref name="LeftOut"/> were not kept) and the events.</summary>
internal sealed record AnomalyStateDocument(DateTimeOffset SavedAt, List<TrackState> Tracks, List<AnomalyEvent> Events, long NextEventId, int LeftOut);

/// <summary>What a replica that does not lead counted for one caller on one route, for the leader's detector.</summary>
/// <param name="Seen">
/// How long the replica had been counting it when it handed the count over: a caller the leader does not track yet has
/// been seen since then, not only since the count arrived (up to a sync interval later, with its jump in the same
/// count). A duration, not a time, so no other replica's clock is trusted.
/// </param>
internal sealed record ForwardedCount(AnomalyKey Key, long Count, long Errors, TimeSpan Seen = default);

/// <summary>Bounds and cadence of the detector; the thresholds are per policy (<see cref="AnomalyPolicySpec"/>).</summary>
internal sealed class AnomalyOptions
{
    /// <summary>The window a rate is measured over: a caller is judged at the end of each one, and as soon as its count crosses the threshold within one.</summary>
    public TimeSpan Window { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Callers × routes tracked at most; beyond that, the least recently seen normal ones are forgotten, then new ones are not tracked (counted).</summary>
    public int MaxKeys { get; init; } = 20_000;

    /// <summary>Transitions kept for <c>ztmctl anomalies</c>; the oldest go first.</summary>
    public int MaxEvents { get; init; } = 1_000;

    /// <summary>
    /// Tracks stored at most (restricted ones first, then the most recently seen): the rest learn again after a restart.
    /// A ConfigMap holds 1 MiB; about 10,000 tracks fit gzipped.
    /// </summary>
    public int MaxPersistedTracks { get; init; } = 10_000;

    /// <summary>Callers × routes a replica that does not lead keeps for the leader per exchange; the requests of the rest are counted as dropped.</summary>
    public int MaxForwardedKeys { get; init; } = 5_000;

    /// <summary>How often state is stored (and followed) and counts are exchanged between replicas; the window by default.</summary>
    public TimeSpan? SyncInterval { get; init; }

    /// <summary>A window needs this many requests before its error ratio is judged.</summary>
    public int MinimumErrorSample { get; init; } = 10;

    /// <summary>
    /// The share of its route's requests in a window a caller must have to be anomalous: a flash crowd raises many
    /// callers at once, each with a small share; one caller running away dominates its route.
    /// </summary>
    public double DominantShare { get; init; } = 0.5;
}
