using k8s.Models;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Anomalies;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.KubernetesDouble;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.Anomalies;

/// <summary>
/// Anomaly response with two control-plane replicas against the Kubernetes API double, composed as
/// <c>ztm-controlplane --kubernetes</c> composes them. The detectors run on one fake clock and the state rounds
/// (<see cref="AnomalyStateSync.SyncAsync"/>) are called by the test, one per window: the scraper's requests reach only
/// the replica that does not lead, the leader's detector sees them through that replica's counts, and both replicas
/// push the restriction to their sidecars; it survives the leader's stop and a new replica starts with it.
/// </summary>
public sealed class AnomaliesAcrossReplicasTests : IAsyncLifetime
{
    private const string Namespace = KubernetesReplicaParts.Namespace;
    private const string Scraper = "spiffe://cluster.local/ns/shop/sa/scraper";
    private static readonly SpiffeId OrdersSidecar = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    private readonly ReplicaCluster _cluster = new("ztm-anomaly-replicas-");
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));

    public Task InitializeAsync() => _cluster.InitializeAsync();

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task The_leader_judges_what_another_replica_observed_every_replica_pushes_the_restriction_and_it_outlives_the_leader()
    {
        var a = await StartAsync("controlplane-a");
        await a.Logs.WaitForAsync(l => l.StartsWith("leading: controlplane-a ", StringComparison.Ordinal), 1, Timeout);
        var b = await StartAsync("controlplane-b");
        Assert.False(b.Get<IReplicaLeadership>().IsLeading);

        // 15 minutes at 10/min, then 5,000/min, all of it served by B's sidecars.
        await SendAsync(b, [a, b], 10, TimeSpan.FromMinutes(15));
        Assert.Empty(a.Get<AnomalyDetector>().Restrictions);
        await SendAsync(b, [a, b], 5000, TimeSpan.FromSeconds(20));

        var onA = Assert.Single(a.Get<AnomalyDetector>().Restrictions, r => r.Route == "*");
        Assert.Equal((Scraper, RestrictionAction.Throttle), (onA.Caller, onA.Action));
        Assert.Contains(a.Get<AnomalyDetector>().Snapshot().Events, e => e.Key.Caller == Scraper && e.To == AnomalyState.Throttled && e.Action.StartsWith("throttled to ", StringComparison.Ordinal));
        // B took the leader's state: its own sidecars get the same restriction, in the same config version.
        await SyncAsync(b);
        var stateB = await WaitForAsync(b.Get<ConfigStore>(), s => s.Restrictions.Any(r => r.Caller == Scraper));
        var stateA = await WaitForAsync(a.Get<ConfigStore>(), s => s.Restrictions.Any(r => r.Caller == Scraper));
        Assert.Equal(stateA.Restrictions.AsEnumerable(), stateB.Restrictions.AsEnumerable());
        Assert.Equal(stateA.Version, stateB.Version);
        Assert.Contains(b.Get<AnomalyDetector>().Snapshot().Current, s => s.Key.Caller == Scraper && s.State == AnomalyState.Throttled);

        // Where it is kept: the state in one ConfigMap, B's counts in a ConfigMap of its own.
        var stored = _cluster.Api.Get<V1ConfigMap>("v1", "configmaps", Namespace, ConfigMapAnomalyStateStore.Name)!;
        Assert.True(int.Parse(stored.Data["restricted"], System.Globalization.CultureInfo.InvariantCulture) >= 1);
        Assert.NotNull(_cluster.Api.Get<V1ConfigMap>("v1", "configmaps", Namespace, "ztm-anomaly-counts-controlplane-b"));

        // The leader stops: B leads with the restriction and the baseline it learned from A's state.
        await a.DisposeAsync();
        await b.Logs.WaitForAsync(l => l.StartsWith("leading: controlplane-b ", StringComparison.Ordinal), 1, Timeout);
        var status = Assert.Single(b.Get<AnomalyDetector>().Snapshot().Current, s => s.Key.Caller == Scraper && s.Key.Route == "*");
        Assert.InRange(status.Evidence.BaselinePerMinute, 5, 20);
        Assert.Contains(b.Get<AnomalyDetector>().Restrictions, r => r.Caller == Scraper);

        // A replica that starts now pushes it from the start, before it saw a request.
        var c = await StartAsync("controlplane-c");
        await WaitForAsync(c.Get<ConfigStore>(), s => s.Restrictions.Any(r => r.Caller == Scraper));
        await c.Logs.WaitForAsync(l => l.StartsWith("anomaly state taken from ConfigMap ztm-system/ztm-anomalies: ", StringComparison.Ordinal), 1, Timeout);

        // And the restriction is lifted the same way: quiet for the cool-off, the leader steps back and every replica follows.
        _time.Advance(TimeSpan.FromMinutes(16));
        await SyncAsync(b);
        await SyncAsync(c);
        await WaitForAsync(c.Get<ConfigStore>(), s => !s.Restrictions.Any(r => r.Caller == Scraper));
    }

    [Fact]
    public async Task A_replica_that_cannot_reach_the_API_keeps_its_counts_for_the_next_round_and_says_so()
    {
        var a = await StartAsync("controlplane-a");
        await a.Logs.WaitForAsync(l => l.StartsWith("leading: controlplane-a ", StringComparison.Ordinal), 1, Timeout);
        var b = await StartAsync("controlplane-b");
        Observe(b, 30);
        _time.Advance(TimeSpan.FromSeconds(3));
        _cluster.Api.Fail(r => r.Method == "PUT" && r.Path.Value!.Contains("ztm-anomaly-counts-controlplane-b", StringComparison.Ordinal), 1, 500);

        await SyncAsync(b);

        await b.Logs.WaitForAsync(l => l.StartsWith("anomaly state not shared, tried again next window: cannot write ConfigMap ztm-system/ztm-anomaly-counts-controlplane-b: the API answered 500", StringComparison.Ordinal), 1, Timeout);
        await SyncAsync(b); // the batch is kept and written with the next
        var collected = await new ConfigMapAnomalyCounts(_cluster.Api.CreateClient(), Namespace, a.Get<IReplicaLeadership>(), _time,
            a.Get<ILogger<ConfigMapAnomalyCounts>>()).CollectAsync(DateTimeOffset.MinValue, CancellationToken.None);
        Assert.Equal(30 * 2, collected.Sum(c => c.Count)); // its route and "*"
        Assert.All(collected, c => Assert.Equal(TimeSpan.FromSeconds(3), c.Seen)); // since when B counted them: the leader's history of the caller starts there
    }

    private Task<KubernetesReplicaParts> StartAsync(string name) => StartAsync(name, _time);

    private async Task<KubernetesReplicaParts> StartAsync(string name, TimeProvider time)
    {
        var dataDir = Path.Combine(_cluster.Dir, name);
        var policies = Directory.CreateDirectory(Path.Combine(dataDir, "policies")).FullName;
        File.WriteAllText(Path.Combine(policies, "anomaly.yaml"), """
            apiVersion: security.ztm.dev/v1
            kind: AnomalyPolicy
            metadata: {name: orders-anomalies, namespace: shop}
            spec:
              selector: {service: orders}
              mode: Enforce
            """);
        var replica = await KubernetesReplicaParts.StartAsync(_cluster.Api, dataDir, name, configure: services =>
        {
            // Rounds are the test's: a sync interval that never comes; the detector on the shared fake clock.
            services.AddSingleton(new AnomalyOptions { SyncInterval = TimeSpan.FromDays(1) });
            services.AddSingleton(sp => new AnomalyDetector(sp.GetRequiredService<IAnomalyPolicies>(), sp.GetRequiredService<AnomalyOptions>(),
                sp.GetRequiredService<AnomalyMetrics>(), sp.GetRequiredService<IReplicaLeadership>(), time, sp.GetRequiredService<ILogger<AnomalyDetector>>()));
            services.AddAnomalyResponse();
        });
        _cluster.Track(replica);
        return replica;
    }

    /// <summary>The scraper at <paramref name="perMinute"/> through <paramref name="at"/>'s sidecars, a round on every replica each window.</summary>
    private async Task SendAsync(KubernetesReplicaParts at, KubernetesReplicaParts[] replicas, double perMinute, TimeSpan duration)
    {
        var owed = 0.0;
        for (var t = TimeSpan.FromSeconds(1); t <= duration; t += TimeSpan.FromSeconds(1))
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            owed += perMinute / 60;
            var count = (int)owed;
            owed -= count;
            Observe(at, count);
            if (t.Ticks % Window.Ticks == 0)
            {
                foreach (var replica in replicas.Reverse())
                {
                    await SyncAsync(replica); // the one that does not lead hands over first, as it would by the time the leader reads
                }
            }
        }
    }

    private static void Observe(KubernetesReplicaParts at, int count) =>
        at.Get<AnomalyDetector>().Consume(new ObservationReporter(OrdersSidecar, "orders.shop"),
            [.. Enumerable.Range(0, count).Select(_ => new Observation { Caller = Scraper, Method = "GET", Path = "/orders/1", Status = 200 })]);

    private static Task SyncAsync(KubernetesReplicaParts replica) => replica.Get<AnomalyStateSync>().SyncAsync(CancellationToken.None);

    /// <summary>The responder runs on its own task: wait for the config it publishes, without sleeping.</summary>
    private static async Task<ConfigState> WaitForAsync(ConfigStore config, Func<ConfigState, bool> condition)
    {
        var reached = new TaskCompletionSource<ConfigState>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnChanged(ConfigState state)
        {
            if (condition(state))
            {
                reached.TrySetResult(state);
            }
        }
        config.Changed += OnChanged;
        try
        {
            return condition(config.Current) ? config.Current : await reached.Task.WaitAsync(Timeout);
        }
        finally
        {
            config.Changed -= OnChanged;
        }
    }
}
