using Prometheus;

namespace ZeroTrustMesh.ControlPlane.Telemetry;

/// <summary>
/// The control plane's Prometheus metrics, in a registry of their own (not prometheus-net's static default): several
/// control planes run in one test process, and each must count only what it did. Served on the metrics port.
/// </summary>
internal sealed class ControlPlaneMetrics
{
    private readonly Counter _injectionRequests;

    public ControlPlaneMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        _injectionRequests = factory.CreateCounter(
            "ztm_injection_requests_total",
            "AdmissionReview requests the injection webhook answered, by outcome (injected, skipped, refused, error).",
            new CounterConfiguration { LabelNames = ["outcome"] });
    }

    public CollectorRegistry Registry { get; }

    /// <summary>One AdmissionReview answered: injected, skipped (not selected or already injected), refused (bad annotation), error (bad request).</summary>
    public void InjectionRequest(string outcome) => _injectionRequests.WithLabels(outcome).Inc();
}
