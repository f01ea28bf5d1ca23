using Microsoft.Extensions.DependencyInjection;
using ZeroTrustMesh.ControlPlane.Anomalies;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.Anomalies;

/// <summary>
/// Anomaly response composed with the control plane's real parts (policy directory, config store, distributor,
/// revoker) on a fake clock: what the detector decides becomes a config version that only the restricted workload's
/// snapshot carries, the AnomalyPolicy itself never reaches a sidecar, and a quarantine can revoke.
/// </summary>
public sealed class AnomalyResponseTests() : ControlPlanePartsTest("anomaly")
{
    private static readonly SpiffeId OrdersSidecar = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");
    private const string Scraper = "spiffe://cluster.local/ns/shop/sa/scraper";

    private async Task<ControlPlaneParts> StartAsync(string spec)
    {
        var policies = Directory.CreateDirectory(Path.Combine(DataDir, "policies")).FullName;
        File.WriteAllText(Path.Combine(policies, "anomaly.yaml"), $"""
            apiVersion: security.ztm.dev/v1
            kind: AnomalyPolicy
            metadata: {"{"}name: orders-anomalies, namespace: shop{"}"}
            spec:
              selector: {"{"}service: orders{"}"}
            {spec}
            """);
        return await StartPartsAsync(s => s.AddAnomalyResponse());
    }

    private void Send(AnomalyDetector detector, double perMinute, TimeSpan duration)
    {
        var owed = 0.0;
        for (var t = TimeSpan.Zero; t < duration; t += TimeSpan.FromSeconds(1))
        {
            Time.Advance(TimeSpan.FromSeconds(1));
            owed += perMinute / 60;
            var batch = new List<Observation>();
            for (; owed >= 1; owed--)
            {
                batch.Add(new Observation { Caller = Scraper, Method = "GET", Path = "/orders/1", Status = 200 });
            }
            detector.Consume(new ObservationReporter(OrdersSidecar, "orders.shop"), batch);
        }
    }

    [Fact]
    public async Task An_enforced_throttle_is_a_new_version_in_the_restricted_workloads_snapshot_only()
    {
        var parts = await StartAsync("  mode: Enforce");
        var config = parts.Get<ConfigStore>();
        var before = config.Current.Version;
        var detector = parts.Get<AnomalyDetector>();

        Send(detector, 10, TimeSpan.FromMinutes(15));
        Assert.Equal(before, config.Current.Version);
        Send(detector, 5000, TimeSpan.FromSeconds(5));

        var state = await WaitForAsync(config, s => !s.Restrictions.IsEmpty);
        Assert.NotEqual(before, state.Version);
        var distributor = parts.Get<ConfigDistributor>();
        var orders = ConfigSnapshot.Parser.ParseFrom(distributor.SnapshotFor(state, new WorkloadRef("shop", "orders")).Bytes);
        var restriction = Assert.Single(orders.CallerRestrictions, r => r.Route == "*");
        Assert.Equal((Scraper, CallerRestrictionAction.Throttle, 60u), (restriction.Caller, restriction.Action, restriction.RequestsPerMinute));
        Assert.DoesNotContain(orders.Resources, r => r.Kind == "AnomalyPolicy");
        var payments = ConfigSnapshot.Parser.ParseFrom(distributor.SnapshotFor(state, new WorkloadRef("shop", "payments")).Bytes);
        Assert.Empty(payments.CallerRestrictions);
        Assert.Contains("anomaly-response", File.ReadAllText(Path.Combine(DataDir, "policy-audit.log")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_quarantine_under_revoke_on_quarantine_revokes_the_callers_certificates()
    {
        var parts = await StartAsync("  mode: Enforce\n  quarantineAfter: 30s\n  revokeOnQuarantine: true");
        var config = parts.Get<ConfigStore>();
        var detector = parts.Get<AnomalyDetector>();

        Send(detector, 10, TimeSpan.FromMinutes(15));
        Send(detector, 5000, TimeSpan.FromSeconds(50));

        var state = await WaitForAsync(config, s => s.Revocations.Entries.Any(e => e.Id?.Value == Scraper));
        Assert.Contains(state.Restrictions, r => r.Action == ZeroTrustMesh.Policy.Kinds.RestrictionAction.Quarantine);
        Assert.StartsWith("anomaly: ", state.Revocations.Entries.Single(e => e.Id?.Value == Scraper).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DryRun_changes_no_config()
    {
        var parts = await StartAsync("  mode: DryRun");
        var config = parts.Get<ConfigStore>();
        var before = config.Current.Version;
        var detector = parts.Get<AnomalyDetector>();

        Send(detector, 10, TimeSpan.FromMinutes(15));
        Send(detector, 5000, TimeSpan.FromSeconds(20));

        Assert.Contains(detector.Snapshot().Events, e => e.Action == "none (DryRun)");
        Assert.Equal(before, config.Current.Version);
    }

    [Fact]
    public async Task A_restart_lifts_no_restriction_and_keeps_the_baselines_and_events()
    {
        var parts = await StartAsync("  mode: Enforce");
        var detector = parts.Get<AnomalyDetector>();
        Send(detector, 10, TimeSpan.FromMinutes(15));
        Send(detector, 5000, TimeSpan.FromSeconds(5));
        var before = await WaitForAsync(parts.Get<ConfigStore>(), s => !s.Restrictions.IsEmpty);
        var events = detector.Snapshot().Events;
        await parts.StopAsync();
        Assert.True(File.Exists(Path.Combine(DataDir, "anomalies.json")));

        var restarted = await StartAsync("  mode: Enforce");

        // Pushed from the start, before any observation arrives.
        var after = await WaitForAsync(restarted.Get<ConfigStore>(), s => !s.Restrictions.IsEmpty);
        Assert.Equal(before.Restrictions.AsEnumerable(), after.Restrictions.AsEnumerable());
        var again = restarted.Get<AnomalyDetector>();
        Assert.Equal(events.Select(e => (e.Id, e.Key, e.To)), again.Snapshot().Events.Select(e => (e.Id, e.Key, e.To)));
        var status = Assert.Single(again.Snapshot().Current, s => s.Key.Route == "*");
        Assert.InRange(status.Evidence.BaselinePerMinute, 5, 20);
        // The baseline is the one learned before: the caller back at 10/min is normal, at 5,000 anomalous again at once.
        Time.Advance(TimeSpan.FromMinutes(16));
        again.Tick();
        await WaitForAsync(restarted.Get<ConfigStore>(), s => s.Restrictions.IsEmpty);
        Send(again, 5000, TimeSpan.FromSeconds(5));
        await WaitForAsync(restarted.Get<ConfigStore>(), s => !s.Restrictions.IsEmpty);
    }

    [Fact]
    public async Task Anomaly_state_that_does_not_parse_is_named_and_the_control_plane_starts_without_it()
    {
        File.WriteAllText(Path.Combine(DataDir, "anomalies.json"), "{ not json");
        var logs = new CollectingLogs();
        var policies = Directory.CreateDirectory(Path.Combine(DataDir, "policies")).FullName;
        await using var parts = await ControlPlaneParts.StartAsync(DataDir, Time, s => s.AddAnomalyResponse(), logs);
        await logs.WaitForAsync(l => l.StartsWith($"anomaly state not taken from {Path.Combine(DataDir, "anomalies.json")} (baselines start over, no restriction is in force): ", StringComparison.Ordinal)
            && l.Contains("is not anomaly state", StringComparison.Ordinal), 1, TimeSpan.FromSeconds(10));
        Assert.Empty(parts.Get<AnomalyDetector>().Restrictions);
    }

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
            if (condition(config.Current))
            {
                return config.Current;
            }
            return await reached.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            config.Changed -= OnChanged;
        }
    }
}
