using Microsoft.Extensions.DependencyInjection.Extensions;
using ZeroTrustMesh.ControlPlane.Observations;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>
/// Anomaly response's parts: the detector (an observation consumer), its policies, metrics, the responder, and the
/// state's store (the data directory unless a deployment mode registered its own first, as Kubernetes does with
/// <see cref="ConfigMapAnomalyStateStore"/> and <see cref="ConfigMapAnomalyCounts"/>).
/// </summary>
internal static class AnomalyServices
{
    public static IServiceCollection AddAnomalyResponse(this IServiceCollection services)
    {
        services.TryAddSingleton(new AnomalyOptions());
        services.TryAddSingleton<IAnomalyPolicies, ConfigAnomalyPolicies>();
        services.TryAddSingleton<AnomalyMetrics>();
        services.TryAddSingleton<AnomalyDetector>();
        services.AddSingleton<IObservationConsumer>(sp => sp.GetRequiredService<AnomalyDetector>());
        services.TryAddSingleton<IAnomalyStateStore>(sp => new FileAnomalyStateStore(sp.GetRequiredService<ControlPlaneOptions>().DataDir));
        services.TryAddSingleton<AnomalyStateSync>();
        services.AddHostedService(sp => sp.GetRequiredService<AnomalyStateSync>()); // takes the stored state first
        services.AddHostedService<AnomalyResponder>(); // every replica: its own sidecars; revocations leader-only
        return services;
    }
}
