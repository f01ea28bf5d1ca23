using Prometheus;
using ZeroTrustMesh.ControlPlane.Telemetry;

namespace ZeroTrustMesh.ControlPlane.Observations;

/// <summary>The observation stream's metrics, in the control plane's registry; every series exists from the start at 0.</summary>
internal sealed class ObservationMetrics
{
    /// <summary>Why a batch was refused (the stream ends with it): each a fixed word.</summary>
    public static readonly IReadOnlyList<string> RefusalReasons = ["another_identity", "too_large", "too_many", "malformed", "sequence"];

    private readonly Counter _accepted;
    private readonly Counter _refused;
    private readonly Counter _droppedBySidecars;
    private readonly Counter _gaps;
    private readonly Counter _clamped;

    public ObservationMetrics(ControlPlaneMetrics metrics)
    {
        var factory = Metrics.WithCustomRegistry(metrics.Registry);
        _accepted = factory.CreateCounter("ztm_observations_accepted_total", "Request observations accepted from sidecars and handed to the consumers (API inventory, …).");
        _refused = factory.CreateCounter("ztm_observation_batches_refused_total",
            "Observation batches refused (the stream ends with the reason), by reason: another_identity, too_large, too_many, malformed, sequence.", "reason");
        _droppedBySidecars = factory.CreateCounter("ztm_observations_dropped_by_sidecars_total",
            "Observations sidecars said they dropped (their buffer was full, or a stream broke with a batch in flight).");
        _gaps = factory.CreateCounter("ztm_observation_sequence_gaps_total", "Batches missing from a stream's sequence (numbers skipped).");
        _clamped = factory.CreateCounter("ztm_observation_times_clamped_total",
            "Observations whose time, corrected for the reporter's clock skew, was in the future or too far in the past, and was clamped.");
        foreach (var reason in RefusalReasons)
        {
            _refused.WithLabels(reason);
        }
    }

    public void Accepted(int count) => _accepted.Inc(count);

    public void Refused(string reason) => _refused.WithLabels(reason).Inc();

    public void DroppedBySidecar(ulong count) => _droppedBySidecars.Inc(count);

    public void Gap(ulong missing) => _gaps.Inc(missing);

    public void Clamped(int count) => _clamped.Inc(count);
}
