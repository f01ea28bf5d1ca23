using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests;

/// <summary>
/// One control-plane replica in Kubernetes mode, composed as <c>ztm-controlplane --kubernetes</c> composes it (the CA
/// from its Secret, <see cref="ControlPlaneServices.AddKubernetesState"/>, then the rest; policy from its own data
/// directory, which tests leave empty) against the Kubernetes API double; hosted services started, stopped on disposal.
/// </summary>
internal sealed class KubernetesReplicaParts : IAsyncDisposable
{
    public const string Namespace = "ztm-system";

    /// <summary>
    /// Real timings with a lease that cannot lapse during a test: a leader that renews late under a loaded CI (a 2 s lease
    /// once moved mid-test, and the step the test waited for came from the other replica) keeps leading; a stopped leader
    /// releases the Lease, so the next one takes over within one retry (250 ms), as every failover here does.
    /// </summary>
    public static readonly LeaderElectionOptions Timing = new(
        LeaderElectionOptions.DefaultLeaseName, "", TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(45), TimeSpan.FromMilliseconds(250));

    private readonly ServiceProvider _services;
    private bool _stopped;

    private KubernetesReplicaParts(string name, ServiceProvider services, CollectingLogs logs)
    {
        Name = name;
        _services = services;
        Logs = logs;
    }

    public string Name { get; }

    public CollectingLogs Logs { get; }

    /// <param name="rotationPoll">
    /// How often the leader advances a CA rotation and every replica reports its sidecars; with it, rotation steps wait
    /// for no reconnect grace, and a report goes stale after <paramref name="reportTimeout"/>.
    /// </param>
    /// <param name="configure">Parts added after the control plane's, as <c>ztm-controlplane</c> adds anomaly response.</param>
    public static async Task<KubernetesReplicaParts> StartAsync(KubernetesApiDouble api, string dataDir, string name, TimeSpan? rotationPoll = null, TimeSpan? reportTimeout = null,
        Action<IServiceCollection>? configure = null)
    {
        var plain = ControlPlaneParts.Options(dataDir);
        var options = new ControlPlaneOptions
        {
            DataDir = plain.DataDir,
            ListenAddress = plain.ListenAddress,
            Port = 0,
            TrustDomain = plain.TrustDomain,
            SvidTtl = plain.SvidTtl,
            JoinTokenTtl = plain.JoinTokenTtl,
            OperatorConfigPath = plain.OperatorConfigPath,
            Kubernetes = true,
            Namespace = Namespace,
            LeaderElection = Timing with { Identity = name },
            CaRotationPoll = rotationPoll ?? plain.CaRotationPoll,
            CaRotationReconnectGrace = rotationPoll is null ? plain.CaRotationReconnectGrace : TimeSpan.Zero,
            ReplicaReportTimeout = reportTimeout ?? plain.ReplicaReportTimeout,
        };
        var client = api.CreateClient();
        var caStore = new SecretCaStore(client, Namespace, options, TimeProvider.System);
        var (ca, _) = caStore.LoadOrCreate();
        var logs = new CollectingLogs();
        var services = new ServiceCollection();
        services.AddLogging(l => l.AddProvider(logs));
        services.AddSingleton(options);
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<ICaStore>(caStore);
        services.AddSingleton(ca);
        services.AddKubernetesState(client, Namespace, options).AddStandaloneState(options).AddControlPlane();
        configure?.Invoke(services);
        var parts = new KubernetesReplicaParts(name, services.BuildServiceProvider(), logs);
        foreach (var hosted in parts._services.GetServices<IHostedService>())
        {
            await hosted.StartAsync(CancellationToken.None);
        }
        return parts;
    }

    public T Get<T>()
        where T : notnull => _services.GetRequiredService<T>();

    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }
        _stopped = true;
        foreach (var hosted in _services.GetServices<IHostedService>().Reverse())
        {
            await hosted.StopAsync(CancellationToken.None);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await _services.DisposeAsync();
    }
}
