using Microsoft.Extensions.DependencyInjection.Extensions;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.ControlPlane.Registry;
using ZeroTrustMesh.ControlPlane.Telemetry;

namespace ZeroTrustMesh.ControlPlane;

/// <summary>The control plane's parts, registered in dependency order; the state behind interfaces is one call.</summary>
internal static class ControlPlaneServices
{
    /// <summary>
    /// The state of one process with a local data directory: policy files, revocations, join tokens, the registry, and
    /// a replica that always leads, whose own config streams are every sidecar there is. Registered with <c>TryAdd</c>: a deployment mode (Kubernetes) or a test registers
    /// its own first.
    /// </summary>
    public static IServiceCollection AddStandaloneState(this IServiceCollection services, ControlPlaneOptions options)
    {
        services.TryAddSingleton<IReplicaLeadership, StandaloneLeadership>();
        services.TryAddSingleton<IBundleFollowers, LocalBundleFollowers>();
        services.TryAddSingleton<Audit.ICheckpointStore>(_ => new Audit.FileCheckpointStore(options.DataDir));
        services.TryAddSingleton<IRevocationStore, FileRevocationStore>();
        services.TryAddSingleton<IJoinTokenStore>(sp => new FileJoinTokenStore(options.DataDir, sp.GetRequiredService<TimeProvider>()));
        if (!services.Any(d => d.ServiceType == typeof(IPolicySource)))
        {
            services.AddSingleton<DirectoryPolicySource>();
            services.AddSingleton<IPolicySource>(sp => sp.GetRequiredService<DirectoryPolicySource>());
            services.AddHostedService(sp => sp.GetRequiredService<DirectoryPolicySource>()); // watches the directory
        }
        if (!services.Any(d => d.ServiceType == typeof(IServiceRegistry)))
        {
            services.AddSingleton<LocalServiceRegistry>();
            services.AddSingleton<IServiceRegistry>(sp => sp.GetRequiredService<LocalServiceRegistry>());
            services.AddHostedService(sp => sp.GetRequiredService<LocalServiceRegistry>()); // saves the registry on stop
        }
        return services;
    }

    /// <summary>What works on that state: identity issuance, config versioning and distribution, revocation, the API's caller checks.</summary>
    public static IServiceCollection AddControlPlane(this IServiceCollection services)
    {
        services.TryAddSingleton<ControlPlaneMetrics>();
        services.TryAddSingleton<ControlPlaneCredentials>();
        services.TryAddSingleton<TrustBundleFeed>();
        services.TryAddSingleton<CallerVerifier>();
        services.TryAddSingleton<WorkloadCaller>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAttestor, JoinTokenAttestor>());
        services.TryAddSingleton<Attestors>();
        services.TryAddSingleton<SvidIssuer>();
        services.TryAddSingleton<ConfigStore>();
        services.TryAddSingleton<ConfigDistributor>();
        services.TryAddSingleton<Revoker>();
        services.AddHostedService<RevocationPruner>(); // leader-only
        services.TryAddSingleton<CaRotation>();
        services.AddHostedService<CaRotationService>(); // leader-only
        return services;
    }

    /// <summary>
    /// With the Kubernetes API (<paramref name="client"/>, one per process): sidecars may prove who they are with a
    /// projected service-account token (<see cref="ServiceAccountTokenAttestor"/>); join tokens keep working beside it.
    /// </summary>
    /// <summary>
    /// With <c>--kubernetes</c>, policy comes from the cluster's custom resources (<see cref="KubernetesPolicySource"/>),
    /// registered before <see cref="AddStandaloneState"/> so the directory source is not: in a cluster the API server is
    /// the store every replica shares, and a pod's data directory (an emptyDir by default) is not, so keeping both would
    /// give two truths. Policy is then written with kubectl; <c>ztmctl apply</c> and <c>delete</c> are refused.
    /// </summary>
    public static IServiceCollection AddKubernetesPolicy(this IServiceCollection services, Func<IServiceProvider, k8s.IKubernetes> client)
    {
        services.TryAddSingleton(client);
        services.AddSingleton(sp => new KubernetesPolicySource(
            sp.GetRequiredService<k8s.IKubernetes>(), sp.GetRequiredService<IReplicaLeadership>(), sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<KubernetesPolicySource>>()));
        services.AddSingleton<IPolicySource>(sp => sp.GetRequiredService<KubernetesPolicySource>());
        services.AddHostedService(sp => sp.GetRequiredService<KubernetesPolicySource>()); // lists, watches, writes status (leader)
        // The config store reads the policy set once when it is built (its first version): only after the first lists.
        services.TryAddSingleton(sp =>
        {
            sp.GetRequiredService<KubernetesPolicySource>().WaitForFirstList();
            return ActivatorUtilities.CreateInstance<ConfigStore>(sp);
        });
        return services;
    }

    /// <summary>
    /// With <c>--kubernetes</c>, the registry is the cluster's Services, EndpointSlices and Pods
    /// (<see cref="KubernetesServiceRegistry"/>), registered before <see cref="AddStandaloneState"/> so the sidecars'
    /// own registrations are not the source: their Register calls are heartbeats only.
    /// </summary>
    public static IServiceCollection AddKubernetesRegistry(this IServiceCollection services, Func<IServiceProvider, k8s.IKubernetes> client)
    {
        services.TryAddSingleton(client);
        services.AddSingleton<KubernetesServiceRegistry>();
        services.AddSingleton<IServiceRegistry>(sp => sp.GetRequiredService<KubernetesServiceRegistry>());
        services.AddHostedService(sp => sp.GetRequiredService<KubernetesServiceRegistry>()); // lists and watches
        return services;
    }

    /// <summary>
    /// With <c>--kubernetes</c>, the state the replicas share lives in the cluster, in <paramref name="namespace"/>:
    /// leadership is a Lease (<see cref="KubernetesLeadership"/>), revocations a ConfigMap
    /// (<see cref="ConfigMapRevocationStore"/>), config versions another (<see cref="SharedConfigVersions"/>), which trust
    /// bundle each replica's sidecars follow one ConfigMap per replica (<see cref="ConfigMapBundleFollowers"/>), decision-log
    /// checkpoints one ConfigMap per workload (<see cref="Audit.ConfigMapCheckpointStore"/>), the anomaly detector's state one ConfigMap and its counts one per replica (<see cref="Anomalies.AnomalyStateSync"/>), the AUDIT
    /// policies' counts one ConfigMap every replica adds to (<see cref="LeastPrivilege.ConfigMapAuditCountStore"/>); the CA's
    /// Secret is read before the container is built (<see cref="SecretCaStore"/>). Registered before
    /// <see cref="AddStandaloneState"/> and before every leader-only service: hosted services stop in reverse order, so
    /// the Lease is released only after the singleton work has stopped.
    /// </summary>
    public static IServiceCollection AddKubernetesState(this IServiceCollection services, k8s.IKubernetes client, string @namespace, ControlPlaneOptions options)
    {
        services.TryAddSingleton(client);
        services.AddSingleton(sp => new KubernetesLeadership(client, @namespace, options.LeaderElection, sp.GetRequiredService<ILogger<KubernetesLeadership>>()));
        services.AddSingleton<IReplicaLeadership>(sp => sp.GetRequiredService<KubernetesLeadership>());
        services.AddHostedService(sp => sp.GetRequiredService<KubernetesLeadership>());
        services.AddSingleton(sp => new ConfigMapRevocationStore(client, @namespace, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<ConfigMapRevocationStore>>()));
        services.AddSingleton<IRevocationStore>(sp => sp.GetRequiredService<ConfigMapRevocationStore>());
        services.AddHostedService(sp => sp.GetRequiredService<ConfigMapRevocationStore>()); // follows other replicas' changes
        services.AddSingleton(new SharedConfigVersions(client, @namespace));
        services.AddSingleton(sp => ActivatorUtilities.CreateInstance<ConfigMapBundleFollowers>(sp, client, @namespace));
        services.AddSingleton<IBundleFollowers>(sp => sp.GetRequiredService<ConfigMapBundleFollowers>());
        services.AddHostedService(sp => sp.GetRequiredService<ConfigMapBundleFollowers>()); // reports this replica's sidecars
        services.AddHostedService<CaRotationFollower>(); // replicas share the CA store: follow the leader's rotation steps
        services.AddSingleton<Audit.ICheckpointStore>(new Audit.ConfigMapCheckpointStore(client, @namespace));
        services.AddSingleton<Anomalies.IAnomalyStateStore>(new Anomalies.ConfigMapAnomalyStateStore(client, @namespace));
        services.AddSingleton<Anomalies.IAnomalyCountExchange>(sp => ActivatorUtilities.CreateInstance<Anomalies.ConfigMapAnomalyCounts>(sp, client, @namespace));
        services.AddSingleton<LeastPrivilege.IAuditCountStore>(new LeastPrivilege.ConfigMapAuditCountStore(client, @namespace));
        return services;
    }

    public static IServiceCollection AddKubernetesAttestation(this IServiceCollection services, Func<IServiceProvider, k8s.IKubernetes> client)
    {
        services.TryAddSingleton(client);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAttestor, ServiceAccountTokenAttestor>());
        return services;
    }
}
