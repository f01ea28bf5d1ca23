using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// <c>kind: AnomalyPolicy</c>: per-identity anomaly response for the selected workloads. The control plane keeps, per
/// caller (SPIFFE ID or JWT subject) and route, an EWMA baseline of its request rate and error ratio from the sidecars'
/// observations; a caller far above its baseline is throttled, then quarantined (denied, optionally revoked), and
/// decays back after a quiet cool-off. Read by the control plane only: sidecars receive the restrictions it decides,
/// never the policy (<see cref="PolicyKind.SentToSidecars"/>).
/// </summary>
public sealed record AnomalyPolicy(ResourceMetadata Metadata, AnomalyPolicySpec Spec) : PolicyResource(Metadata)
{
    public const string KindName = "AnomalyPolicy";

    public override string Kind => KindName;

    public override WorkloadSelector? Selector => Spec.Selector;
}

/// <param name="Mode">DryRun (the default): transitions are events only. Enforce: they are pushed to the sidecars.</param>
/// <param name="HalfLife">The EWMA half-life of the baseline: how fast it follows a changing normal.</param>
/// <param name="Multiple">A rate above this multiple of the caller's baseline is anomalous.</param>
/// <param name="MinimumRate">Requests per minute below which a rate is never anomalous, whatever its baseline.</param>
/// <param name="MaxErrorRatio">An error ratio (4xx/5xx but 429) above this, from a caller whose baseline is below it, is anomalous.</param>
/// <param name="MinimumHistory">How long a caller must have been seen before any action.</param>
/// <param name="ThrottleRate">Requests per minute a throttled caller keeps.</param>
/// <param name="QuarantineAfter">A caller still anomalous this long after it was throttled is quarantined (denied).</param>
/// <param name="CoolOff">A caller quiet this long steps back: quarantined to throttled, throttled to normal.</param>
/// <param name="RevokeOnQuarantine">Quarantine also revokes the caller's certificates (workload callers only).</param>
public sealed record AnomalyPolicySpec(
    WorkloadSelector? Selector,
    AnomalyMode Mode,
    TimeSpan HalfLife,
    double Multiple,
    int MinimumRate,
    double MaxErrorRatio,
    TimeSpan MinimumHistory,
    int ThrottleRate,
    TimeSpan QuarantineAfter,
    TimeSpan CoolOff,
    bool RevokeOnQuarantine)
{
    public static readonly TimeSpan DefaultHalfLife = TimeSpan.FromHours(1);
    public const double DefaultMultiple = 10;
    public const int DefaultMinimumRate = 120;
    public const double DefaultMaxErrorRatio = 0.5;
    public static readonly TimeSpan DefaultMinimumHistory = TimeSpan.FromMinutes(10);
    public const int DefaultThrottleRate = 60;
    public static readonly TimeSpan DefaultQuarantineAfter = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan DefaultCoolOff = TimeSpan.FromMinutes(15);

    /// <summary>Every threshold at its default, for <paramref name="selector"/>.</summary>
    public static AnomalyPolicySpec Defaults(WorkloadSelector? selector, AnomalyMode mode = AnomalyMode.DryRun) => new(
        selector, mode, DefaultHalfLife, DefaultMultiple, DefaultMinimumRate, DefaultMaxErrorRatio, DefaultMinimumHistory,
        DefaultThrottleRate, DefaultQuarantineAfter, DefaultCoolOff, RevokeOnQuarantine: false);
}

public enum AnomalyMode
{
    DryRun,
    Enforce,
}
