using Prometheus;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Policy.Kinds;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>
/// <c>ztm_anomaly_transitions_total{from,to,mode}</c> and <c>ztm_anomaly_restrictions</c>, in the control plane's
/// registry. Labels are fixed words (states, modes): every series exists from the start at 0.
/// </summary>
internal sealed class AnomalyMetrics
{
    private static readonly (AnomalyState From, AnomalyState To)[] Moves =
    [
        (AnomalyState.Normal, AnomalyState.Throttled), (AnomalyState.Throttled, AnomalyState.Quarantined),
        (AnomalyState.Quarantined, AnomalyState.Throttled), (AnomalyState.Throttled, AnomalyState.Normal),
    ];

    private readonly Counter _transitions;
    private readonly Gauge _restrictions;

    public AnomalyMetrics(ControlPlaneMetrics metrics)
    {
        var factory = Metrics.WithCustomRegistry(metrics.Registry);
        _transitions = factory.CreateCounter("ztm_anomaly_transitions_total",
            "Anomaly response transitions of a caller on a route, by from and to state (normal, throttled, quarantined) and policy mode (DryRun: events only).",
            "from", "to", "mode");
        _restrictions = factory.CreateGauge("ztm_anomaly_restrictions", "Caller restrictions (throttles and quarantines) pushed to sidecars now, by action.", "action");
        foreach (var (from, to) in Moves)
        {
            foreach (var mode in (ReadOnlySpan<AnomalyMode>)[AnomalyMode.DryRun, AnomalyMode.Enforce])
            {
                _transitions.WithLabels(Label(from), Label(to), mode.ToString()).IncTo(0);
            }
        }
        _restrictions.WithLabels("throttle").Set(0);
        _restrictions.WithLabels("quarantine").Set(0);
    }

    public void Transition(AnomalyState from, AnomalyState to, AnomalyMode mode) => _transitions.WithLabels(Label(from), Label(to), mode.ToString()).Inc();

    public void Restrictions(int throttles, int quarantines)
    {
        _restrictions.WithLabels("throttle").Set(throttles);
        _restrictions.WithLabels("quarantine").Set(quarantines);
    }

    public static string Label(AnomalyState state) => state switch
    {
        AnomalyState.Throttled => "throttled",
        AnomalyState.Quarantined => "quarantined",
        _ => "normal",
    };
}
