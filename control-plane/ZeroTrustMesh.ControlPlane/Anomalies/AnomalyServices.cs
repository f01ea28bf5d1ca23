using Microsoft.Extensions.DependencyInjection.Extensions;
using ZeroTrustMesh.ControlPlane.Observations;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>Anomaly response's parts: the detector (an observation consumer), its policies, metrics, and the leader-only responder.</summary>
internal static class AnomalyServices
{
    public static IServiceCollection AddAnomalyResponse(this IServiceCollection services)
    {
        services.TryAddSingleton(new AnomalyOptions());
        services.TryAddSingleton<IAnomalyPolicies, ConfigAnomalyPolicies>();
        services.TryAddSingleton<AnomalyMetrics>();
        services.TryAddSingleton<AnomalyDetector>();
        services.AddSingleton<IObservationConsumer>(sp => sp.GetRequiredService<AnomalyDetector>());
        services.AddHostedService<AnomalyResponder>(); // leader-only
        return services;
    }
}
