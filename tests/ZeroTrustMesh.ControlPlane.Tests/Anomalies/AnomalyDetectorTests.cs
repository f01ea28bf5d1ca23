using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Anomalies;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using Observation = ZeroTrustMesh.Proto.V1.Observation;

namespace ZeroTrustMesh.ControlPlane.Tests.Anomalies;

/// <summary>The detector on a fake clock: runaway callers are caught fast, swings and crowds are not, and everything decays.</summary>
public sealed class AnomalyDetectorTests : IDisposable
{
    private static readonly WorkloadRef Orders = new("shop", "orders");
    private const string Scraper = "spiffe://cluster.local/ns/shop/sa/scraper";

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly FixedPolicies _policies = new();
    private readonly ControlPlaneMetrics _metrics = new();
    private AnomalyDetector? _detector;

    /// <summary>Per caller, the fraction of a request owed from earlier steps (so 10/min is exactly 10 a minute).</summary>
    private readonly Dictionary<string, double> _owed = [];

    private AnomalyDetector Detector(AnomalyPolicySpec? spec = null, AnomalyOptions? options = null)
    {
        _policies.Policy = new AnomalyPolicy(new ResourceMetadata("orders-anomalies", "shop"), spec ?? Enforce());
        return _detector = new AnomalyDetector(_policies, options ?? new AnomalyOptions(), new AnomalyMetrics(_metrics), new StandaloneLeadership(), _time,
            NullLogger<AnomalyDetector>.Instance);
    }

    private static AnomalyPolicySpec Enforce() => AnomalyPolicySpec.Defaults(new("orders"), AnomalyMode.Enforce);

    public void Dispose() => _detector?.Dispose();

    /// <summary>Each caller sends at its rate (requests per minute) for <paramref name="duration"/>, one batch per <paramref name="step"/>.</summary>
    private void Send(IReadOnlyDictionary<string, double> perMinute, TimeSpan duration, TimeSpan? step = null, string path = "/orders/{id}", uint status = 200,
        Func<bool>? until = null)
    {
        var each = step ?? TimeSpan.FromSeconds(1);
        for (var elapsed = TimeSpan.Zero; elapsed < duration; elapsed += each)
        {
            _time.Advance(each);
            var batch = new List<Observation>();
            foreach (var (caller, rate) in perMinute)
            {
                var owed = _owed.GetValueOrDefault(caller) + (rate * each.TotalMinutes);
                var count = (int)owed;
                _owed[caller] = owed - count;
                for (var i = 0; i < count; i++)
                {
                    batch.Add(new Observation { Caller = caller, Method = "GET", Path = "/orders/42", Template = path, Status = status });
                }
            }
            _detector!.Consume(new ObservationReporter(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders"), "orders.shop"), batch);
            if (until?.Invoke() == true)
            {
                return;
            }
        }
    }

    private void Send(string caller, double perMinute, TimeSpan duration, Func<bool>? until = null) =>
        Send(new Dictionary<string, double> { [caller] = perMinute }, duration, until: until);

    private static Dictionary<string, double> Callers(int count, double perMinute) =>
        Enumerable.Range(0, count).ToDictionary(i => $"spiffe://cluster.local/ns/shop/sa/client-{i}", _ => perMinute);

    [Fact]
    public void A_caller_at_10_a_minute_jumping_to_5000_is_throttled_within_10_seconds_of_the_jump()
    {
        var detector = Detector();
        Send(Scraper, 10, TimeSpan.FromMinutes(30));
        Assert.Empty(detector.Restrictions);

        var jump = _time.GetUtcNow();
        Send(Scraper, 5000, TimeSpan.FromSeconds(30), until: () => !detector.Restrictions.IsEmpty);

        Assert.True(_time.GetUtcNow() - jump <= TimeSpan.FromSeconds(10), $"throttled {_time.GetUtcNow() - jump} after the jump");
        var restriction = Assert.Single(detector.Restrictions, r => r.Route == CallerRestriction.EveryRoute);
        Assert.Equal(new CallerRestriction(Orders, Scraper, "", "*", RestrictionAction.Throttle, AnomalyPolicySpec.DefaultThrottleRate, restriction.Reason), restriction);
        Assert.Contains("AnomalyPolicy shop/orders-anomalies", restriction.Reason, StringComparison.Ordinal);
        var (current, events) = detector.Snapshot();
        var transition = Assert.Single(events, e => e.Key.Route == "*");
        Assert.Equal((AnomalyState.Normal, AnomalyState.Throttled, "throttled to 60/min"), (transition.From, transition.To, transition.Action));
        Assert.InRange(transition.Evidence.BaselinePerMinute, 8, 12);
        Assert.True(transition.Evidence.RatePerMinute >= AnomalyPolicySpec.DefaultMinimumRate);
        Assert.True(transition.Evidence.RatePerMinute > 10 * transition.Evidence.BaselinePerMinute);
        Assert.Equal(1, transition.Evidence.Share);
        Assert.Contains("the baseline", transition.Reason, StringComparison.Ordinal);
        Assert.Contains(current, s => s.Key.Caller == Scraper && s.State == AnomalyState.Throttled);
    }

    [Fact]
    public void A_gradual_3x_daily_swing_causes_no_action()
    {
        // Stricter than the defaults: 3x over the baseline would do, at any rate.
        var detector = Detector(Enforce() with { Multiple = 3, MinimumRate = 1, ThrottleRate = 1 });
        var callers = Callers(1, 0); // alone on its route: nothing but its baseline stands between it and a throttle
        var step = TimeSpan.FromSeconds(10);
        for (var t = TimeSpan.Zero; t < TimeSpan.FromDays(2); t += step)
        {
            // 50/min at night, 150/min at the afternoon peak.
            var rate = 100 - (50 * Math.Cos(2 * Math.PI * t.TotalHours / 24));
            foreach (var caller in callers.Keys)
            {
                callers[caller] = rate;
            }
            Send(callers, step, step);
        }

        Assert.Empty(detector.Snapshot().Events);
        Assert.Empty(detector.Restrictions);
    }

    [Fact]
    public void A_short_flash_crowd_across_many_callers_causes_no_action_while_one_caller_alone_would_be_throttled()
    {
        var detector = Detector();
        var crowd = Callers(50, 10);
        Send(crowd, TimeSpan.FromMinutes(30));

        // Everyone at 60x for a minute: each caller alone is far above its baseline, but none dominates the route.
        Send(Callers(50, 600), TimeSpan.FromMinutes(1));
        Send(crowd, TimeSpan.FromMinutes(5));

        Assert.Empty(detector.Snapshot().Events);
        Assert.Empty(detector.Restrictions);

        // The same jump by one of them is an anomaly.
        var alone = new Dictionary<string, double>(crowd) { [crowd.Keys.First()] = 600 };
        Send(alone, TimeSpan.FromSeconds(30), until: () => !detector.Restrictions.IsEmpty);
        Assert.Contains(detector.Restrictions, r => r.Caller == crowd.Keys.First());
    }

    [Fact]
    public void Nothing_happens_before_the_minimum_history_and_a_caller_busy_from_the_start_is_normal_at_its_rate()
    {
        var detector = Detector();
        Send(Scraper, 10, TimeSpan.FromMinutes(2));
        Send(Scraper, 5000, TimeSpan.FromMinutes(1));
        Assert.Empty(detector.Snapshot().Events);

        const string Busy = "spiffe://cluster.local/ns/shop/sa/batch";
        Send(Busy, 5000, TimeSpan.FromMinutes(20));
        Assert.Empty(detector.Snapshot().Events);
        Assert.Empty(detector.Restrictions);
    }

    [Fact]
    public void A_caller_seen_through_a_replica_that_does_not_lead_has_its_history_from_that_replicas_first_count()
    {
        // A history shorter than the sync interval (10 s): the caller's first requests and its jump reach the leader in one count.
        var leader = Detector(Enforce() with { MinimumHistory = TimeSpan.FromSeconds(2), MinimumRate = 60, ThrottleRate = 1 });
        using var follower = new AnomalyDetector(_policies, new AnomalyOptions(), new AnomalyMetrics(_metrics), new Following(), _time, NullLogger<AnomalyDetector>.Instance);
        var reporter = new ObservationReporter(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders"), "orders.shop");
        void Serve(int requests) => follower.Consume(reporter,
            [.. Enumerable.Range(0, requests).Select(_ => new Observation { Caller = Scraper, Method = "GET", Path = "/orders/42", Template = "/orders/{id}", Status = 200 })]);
        var first = _time.GetUtcNow() + TimeSpan.FromSeconds(1);
        for (var i = 0; i < 4; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            Serve(1); // 1/s
        }
        for (var i = 0; i < 9; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(0.5));
            Serve(25); // 3,000/min
        }
        Assert.Empty(follower.Restrictions); // it does not judge

        // Handed over 8.5 s into the leader's window: had the leader dated the caller from now, the window would close
        // 1.5 s into its history, teach the jump as its baseline, and never throttle it.
        var (counts, dropped) = follower.TakeForwarded();
        Assert.Equal((0, TimeSpan.FromSeconds(7.5)), (dropped, Assert.Single(counts, c => c.Key.Route == "*").Seen));
        leader.Fold(counts);

        Assert.Contains(leader.Restrictions, r => r.Caller == Scraper && r.Route == "*");
        var transition = Assert.Single(leader.Snapshot().Events, e => e.Key.Route == "*");
        Assert.Equal(_time.GetUtcNow() - first, transition.Evidence.History);
        Assert.Equal(229 * 6, transition.Evidence.RatePerMinute);
    }

    [Fact]
    public void A_caller_that_keeps_on_is_quarantined_and_each_step_decays_after_the_cool_off()
    {
        var detector = Detector(Enforce() with { QuarantineAfter = TimeSpan.FromMinutes(1), CoolOff = TimeSpan.FromMinutes(3) });
        Send(Scraper, 10, TimeSpan.FromMinutes(30));
        Send(Scraper, 5000, TimeSpan.FromSeconds(90));
        Assert.Equal(RestrictionAction.Quarantine, Assert.Single(detector.Restrictions, r => r.Route == "*").Action);

        // Back to normal behaviour: one step back per quiet cool-off.
        Send(Scraper, 10, TimeSpan.FromMinutes(2));
        Assert.Equal(RestrictionAction.Quarantine, Assert.Single(detector.Restrictions, r => r.Route == "*").Action);
        Send(Scraper, 10, TimeSpan.FromMinutes(1.5));
        Assert.Equal(RestrictionAction.Throttle, Assert.Single(detector.Restrictions, r => r.Route == "*").Action);
        Send(Scraper, 10, TimeSpan.FromMinutes(3.5));
        Assert.Empty(detector.Restrictions);

        var moves = detector.Snapshot().Events.Where(e => e.Key.Route == "*").Select(e => (e.From, e.To)).ToList();
        Assert.Equal(
            [(AnomalyState.Normal, AnomalyState.Throttled), (AnomalyState.Throttled, AnomalyState.Quarantined),
             (AnomalyState.Quarantined, AnomalyState.Throttled), (AnomalyState.Throttled, AnomalyState.Normal)],
            moves);
        Assert.Contains("quiet for", detector.Snapshot().Events[^1].Reason, StringComparison.Ordinal);
        Assert.Empty(detector.Snapshot().Current);
    }

    [Fact]
    public void Decay_needs_no_traffic_the_clock_alone_brings_a_silent_caller_back()
    {
        var detector = Detector(Enforce() with { CoolOff = TimeSpan.FromMinutes(3) });
        Send(Scraper, 10, TimeSpan.FromMinutes(30));
        Send(Scraper, 5000, TimeSpan.FromSeconds(20));
        Assert.NotEmpty(detector.Restrictions);

        _time.Advance(TimeSpan.FromMinutes(4)); // nothing arrives; the window timer judges

        Assert.Empty(detector.Restrictions);
    }

    [Fact]
    public void A_sudden_error_ratio_is_an_anomaly_too()
    {
        var detector = Detector();
        Send(Scraper, 60, TimeSpan.FromMinutes(30));
        Send(new Dictionary<string, double> { [Scraper] = 90 }, TimeSpan.FromMinutes(1), status: 404);

        var transition = Assert.Single(detector.Snapshot().Events, e => e.Key.Route == "*");
        Assert.StartsWith("error ratio ", transition.Reason, StringComparison.Ordinal);
        Assert.True(transition.Evidence.ErrorRatio > AnomalyPolicySpec.DefaultMaxErrorRatio);
        Assert.True(transition.Evidence.RatePerMinute < AnomalyPolicySpec.DefaultMinimumRate, "not a rate anomaly");
    }

    [Fact]
    public void DryRun_records_the_events_and_restricts_no_one()
    {
        var detector = Detector(Enforce() with { Mode = AnomalyMode.DryRun });
        var changes = 0;
        detector.RestrictionsChanged += _ => changes++;
        Send(Scraper, 10, TimeSpan.FromMinutes(30));
        Send(Scraper, 5000, TimeSpan.FromSeconds(20));

        Assert.Contains(detector.Snapshot().Events, e => e.To == AnomalyState.Throttled && e.Action == "none (DryRun)" && e.Mode == AnomalyMode.DryRun);
        Assert.Empty(detector.Restrictions);
        Assert.Equal(0, changes);
    }

    [Fact]
    public void A_workload_without_an_anomaly_policy_is_not_tracked_and_a_removed_policy_lifts_its_restrictions()
    {
        var detector = Detector();
        Send(Scraper, 10, TimeSpan.FromMinutes(30));
        Send(Scraper, 5000, TimeSpan.FromSeconds(20));
        Assert.NotEmpty(detector.Restrictions);

        _policies.Policy = null;
        _time.Advance(TimeSpan.FromSeconds(10));

        Assert.Empty(detector.Restrictions);
        Assert.Equal(0, detector.TrackCount);
        Send(Scraper, 10, TimeSpan.FromMinutes(1));
        Assert.Equal(0, detector.TrackCount);
    }

    [Fact]
    public void Memory_is_bounded_in_callers_and_in_events()
    {
        var detector = Detector(options: new AnomalyOptions { MaxKeys = 100, MaxEvents = 3 });
        for (var i = 0; i < 20; i++)
        {
            Send(Callers(50, 10).ToDictionary(c => $"{c.Key}-{i}", c => c.Value), TimeSpan.FromSeconds(6));
            Assert.True(detector.TrackCount <= 100, $"{detector.TrackCount} tracks");
        }
        Assert.Equal(0, detector.Untracked); // idle normal tracks made room

        var scrapers = Enumerable.Range(0, 5).Select(i => $"{Scraper}-{i}").ToList();
        foreach (var scraper in scrapers)
        {
            Send(scraper, 10, TimeSpan.FromMinutes(11));
            Send(scraper, 5000, TimeSpan.FromSeconds(20));
        }
        var events = detector.Snapshot().Events;
        Assert.Equal(3, events.Count);
        Assert.Equal(events[0].Id + 2, events[2].Id);
        Assert.True(events[0].Id > 1, "the oldest events were dropped"); // 5 scrapers, 2 routes each
    }

    [Fact]
    public async Task Transitions_are_counted_by_from_to_and_mode()
    {
        var detector = Detector();
        Send(Scraper, 10, TimeSpan.FromMinutes(30));
        Send(Scraper, 5000, TimeSpan.FromSeconds(20));

        using var text = new MemoryStream();
        await _metrics.Registry.CollectAndExportAsTextAsync(text);
        var exposition = System.Text.Encoding.UTF8.GetString(text.ToArray());
        Assert.Contains("ztm_anomaly_transitions_total{from=\"normal\",to=\"throttled\",mode=\"Enforce\"} 2", exposition, StringComparison.Ordinal);
        Assert.Contains("ztm_anomaly_transitions_total{from=\"throttled\",to=\"quarantined\",mode=\"DryRun\"} 0", exposition, StringComparison.Ordinal);
    }

    /// <summary>A replica that does not lead: it counts for the leader and judges nothing.</summary>
    private sealed class Following : IReplicaLeadership
    {
        public bool IsLeading => false;

        public Task RunWhileLeadingAsync(Func<CancellationToken, Task> work, CancellationToken stopping) => Task.Delay(Timeout.Infinite, stopping);
    }

    private sealed class FixedPolicies : IAnomalyPolicies
    {
        public AnomalyPolicy? Policy { get; set; }

        public AnomalyPolicy? For(WorkloadRef workload) => Policy is { } p && p.AppliesTo(workload) ? p : null;
    }
}
