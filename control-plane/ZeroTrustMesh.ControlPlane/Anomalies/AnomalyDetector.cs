using System.Collections.Immutable;
using System.Globalization;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using Observation = ZeroTrustMesh.Proto.V1.Observation;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>The AnomalyPolicy that applies to a workload now (the first by name), or null: its callers are not tracked.</summary>
internal interface IAnomalyPolicies
{
    AnomalyPolicy? For(WorkloadRef workload);
}

/// <summary>
/// Per-identity anomaly detection over the sidecars' observations (issue 19, section 3), on the control plane's clock:
/// 1. Each observation counts for its caller (the JWT subject when there is one, else the SPIFFE ID) on its route (the
///    ApiSpec template, else the path) and on <c>*</c> (the whole workload: enumerating many paths is one caller too),
///    in the current window (<see cref="AnomalyOptions.Window"/>, aligned for all callers).
/// 2. A window is anomalous when the caller's rate is above <c>multiple</c> × its baseline and above <c>minimumRate</c>,
///    and the caller has at least <see cref="AnomalyOptions.DominantShare"/> of its route's requests (a flash crowd
///    raises everyone and no one dominates); or when its error ratio (4xx/5xx but 429) is above <c>maxErrorRatio</c>
///    while its baseline ratio is below. The rate is also checked while a window fills, so a runaway caller is caught
///    within a fraction of a window.
/// 3. The baseline is an EWMA of the per-window rate and error ratio with the policy's half-life, bias-corrected while
///    young; fed by every window while the caller is younger than <c>minimumHistory</c>, then only by windows that are
///    not anomalous (an attacker cannot teach it).
/// 4. States: normal → throttled (anomalous, seen for at least <c>minimumHistory</c>) → quarantined (still anomalous
///    <c>quarantineAfter</c> after the throttle); quiet for <c>coolOff</c>, one step back. Each transition is an
///    <see cref="AnomalyEvent"/> with its evidence, kept in a bounded history, counted, logged.
/// 5. <see cref="Restrictions"/> is what the Enforce policies ask for now; <see cref="RestrictionsChanged"/> says when it
///    changed (<see cref="AnomalyResponder"/> pushes it). DryRun policies produce events only.
/// 6. Only the leader judges. A replica that does not lead forwards its counts (<see cref="TakeForwarded"/>, folded in
///    by the leader with <see cref="Fold"/>) and takes the leader's state (<see cref="Import"/>); both through
///    <see cref="AnomalyStateSync"/>, which also stores the state (<see cref="Export"/>) across restarts.
/// Memory is bounded: at most <see cref="AnomalyOptions.MaxKeys"/> tracks; idle normal ones are forgotten.
/// </summary>
internal sealed class AnomalyDetector : IObservationConsumer, IDisposable
{
    private readonly IAnomalyPolicies _policies;
    private readonly AnomalyOptions _options;
    private readonly AnomalyMetrics _metrics;
    private readonly IReplicaLeadership _leadership;
    private readonly TimeProvider _time;
    private readonly ILogger<AnomalyDetector> _logger;
    private readonly ITimer _timer;
    private readonly Lock _gate = new();
    private readonly Dictionary<AnomalyKey, Track> _tracks = [];
    private readonly Dictionary<(WorkloadRef Workload, string Route), long> _routeCounts = [];
    private readonly Queue<AnomalyEvent> _events = new();
    private DateTimeOffset _windowStart;
    private long _nextEventId = 1;
    private long _untracked;
    private ImmutableArray<CallerRestriction> _restrictions = [];
    private readonly Dictionary<AnomalyKey, (long Count, long Errors, DateTimeOffset Since)> _forwarded = [];
    private long _forwardedDropped;
    private bool _dirty;

    public AnomalyDetector(IAnomalyPolicies policies, AnomalyOptions options, AnomalyMetrics metrics, IReplicaLeadership leadership, TimeProvider time, ILogger<AnomalyDetector> logger)
    {
        _policies = policies;
        _options = options;
        _metrics = metrics;
        _leadership = leadership;
        _time = time;
        _logger = logger;
        _windowStart = Align(time.GetUtcNow());
        _timer = time.CreateTimer(_ => Tick(), null, options.Window, options.Window);
    }

    /// <summary>Raised (outside the detector's lock) when <see cref="Restrictions"/> changed.</summary>
    public event Action<ImmutableArray<CallerRestriction>>? RestrictionsChanged;

    /// <summary>The restrictions the Enforce policies ask for now, in a stable order.</summary>
    public ImmutableArray<CallerRestriction> Restrictions
    {
        get
        {
            lock (_gate)
            {
                return _restrictions;
            }
        }
    }

    /// <summary>Observations not counted because <see cref="AnomalyOptions.MaxKeys"/> tracks were busy.</summary>
    public long Untracked => Interlocked.Read(ref _untracked);

    public int TrackCount
    {
        get
        {
            lock (_gate)
            {
                return _tracks.Count;
            }
        }
    }

    /// <summary>Every caller that is not normal now, and the past transitions (oldest first).</summary>
    public (IReadOnlyList<AnomalyStatus> Current, IReadOnlyList<AnomalyEvent> Events) Snapshot()
    {
        lock (_gate)
        {
            var current = _tracks
                .Where(t => t.Value.State != AnomalyState.Normal)
                .Select(t => new AnomalyStatus(t.Key, t.Value.State, t.Value.Since, t.Value.PolicyName, t.Value.Mode, t.Value.LastEvidence!))
                .OrderBy(s => s.Since)
                .ToList();
            return (current, [.. _events]);
        }
    }

    public void Consume(ObservationReporter reporter, IReadOnlyList<Observation> observations)
    {
        // The workload as policies select it (namespace, service account), as its sidecar compiles its config; not the
        // registry's service name (orders.shop).
        if (!reporter.Identity.TryGetWorkload(out var ns, out var serviceAccount))
        {
            return;
        }
        Observe(new WorkloadRef(ns, serviceAccount), observations);
    }

    /// <summary>
    /// Counts what <paramref name="workload"/>'s sidecar served (the observations' own times are not trusted: this clock
    /// is). A replica that does not lead judges nothing: it keeps the counts for the leader (<see cref="TakeForwarded"/>).
    /// </summary>
    public void Observe(WorkloadRef workload, IReadOnlyList<Observation> observations)
    {
        if (observations.Count == 0 || _policies.For(workload) is not { } policy)
        {
            return;
        }
        bool changed;
        lock (_gate)
        {
            var leading = _leadership.IsLeading;
            var now = _time.GetUtcNow();
            if (leading)
            {
                Advance(now);
            }
            var touched = new HashSet<AnomalyKey>();
            foreach (var observation in observations)
            {
                var route = observation.Template.Length > 0 ? observation.Template : observation.Path;
                if (route.Length == 0 || route.Length > Proto.RestrictionMapping.MaxRouteLength)
                {
                    continue;
                }
                var error = observation.Status >= 400 && observation.Status != 429 ? 1 : 0;
                foreach (var r in (ReadOnlySpan<string>)[route, CallerRestriction.EveryRoute])
                {
                    var key = new AnomalyKey(workload, observation.Caller, observation.Subject, r);
                    if (leading)
                    {
                        Count(key, policy, now, 1, error, touched);
                    }
                    else
                    {
                        Forward(key, 1, error, now);
                    }
                }
            }
            JudgeWhileFilling(touched, now);
            changed = UpdateRestrictions();
        }
        if (changed)
        {
            RestrictionsChanged?.Invoke(Restrictions);
        }
    }

    /// <summary>
    /// On the leader: counts what the other replicas' sidecars served (<see cref="TakeForwarded"/> there), in the current
    /// window, as if observed here now, and judges those callers at once. A caller not tracked yet is tracked from when
    /// that replica began counting it (<see cref="ForwardedCount.Seen"/> before now): its first requests and a jump can
    /// arrive in one count, and its history is what <c>minimumHistory</c> measures.
    /// </summary>
    public void Fold(IReadOnlyList<ForwardedCount> counts)
    {
        bool changed;
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            Advance(now);
            var touched = new HashSet<AnomalyKey>();
            foreach (var count in counts)
            {
                if (count.Count > 0 && _policies.For(count.Key.Workload) is { } policy)
                {
                    Count(count.Key, policy, now, count.Count, count.Errors, touched, now - Clamp(count.Seen));
                }
            }
            JudgeWhileFilling(touched, now);
            changed = UpdateRestrictions();
        }
        if (changed)
        {
            RestrictionsChanged?.Invoke(Restrictions);
        }
    }

    /// <summary>
    /// On a replica that does not lead: the counts kept for the leader since the last call (at most
    /// <see cref="AnomalyOptions.MaxForwardedKeys"/> callers × routes; what did not fit is <c>Dropped</c>), and cleared.
    /// </summary>
    public (IReadOnlyList<ForwardedCount> Counts, long Dropped) TakeForwarded()
    {
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            var counts = _forwarded.Select(f => new ForwardedCount(f.Key, f.Value.Count, f.Value.Errors, Clamp(now - f.Value.Since))).ToList();
            var dropped = _forwardedDropped;
            _forwarded.Clear();
            _forwardedDropped = 0;
            return (counts, dropped);
        }
    }

    private void Forward(AnomalyKey key, long count, long errors, DateTimeOffset now)
    {
        ref var counted = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrNullRef(_forwarded, key);
        if (!System.Runtime.CompilerServices.Unsafe.IsNullRef(ref counted))
        {
            counted = (counted.Count + count, counted.Errors + errors, counted.Since);
        }
        else if (_forwarded.Count < _options.MaxForwardedKeys)
        {
            _forwarded[key] = (count, errors, now);
        }
        else
        {
            _forwardedDropped += count;
        }
    }

    /// <param name="firstSeen">When the caller was first seen, if it is not tracked yet: now, unless another replica saw it earlier.</param>
    private void Count(AnomalyKey key, AnomalyPolicy policy, DateTimeOffset now, long count, long errors, HashSet<AnomalyKey> touched, DateTimeOffset? firstSeen = null)
    {
        if (TrackFor(key, policy, firstSeen ?? now) is not { } track)
        {
            Interlocked.Add(ref _untracked, count);
            return;
        }
        track.Count += count;
        track.Errors += errors;
        track.LastSeen = now;
        ref var routeCount = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_routeCounts, (key.Workload, key.Route), out _);
        routeCount += count;
        touched.Add(key);
        _dirty = true;
    }

    /// <summary>2. A runaway caller is caught while the window fills, not only when it ends.</summary>
    private void JudgeWhileFilling(HashSet<AnomalyKey> touched, DateTimeOffset now)
    {
        foreach (var key in touched)
        {
            var track = _tracks[key];
            if (track.State == AnomalyState.Normal && _policies.For(key.Workload) is { } policy
                && Judge(key, track, policy, now, partial: true) is { Anomalous: true } verdict)
            {
                track.LastAnomalous = now;
                if (now - track.FirstSeen >= policy.Spec.MinimumHistory)
                {
                    // Stamped when decided: that is what "within a second of detection" is measured from.
                    Move(key, track, policy, AnomalyState.Throttled, _time.GetUtcNow(), verdict.Reason, verdict.Evidence);
                }
            }
        }
    }

    /// <summary>Closes the windows that ended by now (the timer calls it every window; observations call it too).</summary>
    public void Tick()
    {
        bool changed;
        lock (_gate)
        {
            if (!_leadership.IsLeading)
            {
                // The leader judges; this replica's state is the leader's (Import). Kept aligned, so that on becoming
                // leader no window of the time it followed counts as idle.
                _windowStart = Align(_time.GetUtcNow());
                return;
            }
            Advance(_time.GetUtcNow());
            changed = UpdateRestrictions();
        }
        if (changed)
        {
            RestrictionsChanged?.Invoke(Restrictions);
        }
    }

    private DateTimeOffset Align(DateTimeOffset now) => new(now.UtcTicks - (now.UtcTicks % _options.Window.Ticks), TimeSpan.Zero);

    private void Advance(DateTimeOffset now)
    {
        var windows = (long)((now - _windowStart) / _options.Window);
        if (windows <= 0)
        {
            return;
        }
        var end = _windowStart + _options.Window;
        foreach (var (key, track) in _tracks.ToList())
        {
            if (_policies.For(key.Workload) is not { } policy)
            {
                _tracks.Remove(key); // the policy is gone: so is the tracking
                continue;
            }
            Close(key, track, policy, end, idleWindows: windows - 1);
            if (track.State == AnomalyState.Normal && now - track.LastSeen > 4 * policy.Spec.HalfLife)
            {
                _tracks.Remove(key); // its baseline has decayed below 1/16: as good as new
            }
        }
        _routeCounts.Clear();
        _windowStart += windows * _options.Window;
        _dirty |= _tracks.Count > 0;
    }

    /// <summary>
    /// Ends <paramref name="key"/>'s window at <paramref name="end"/>: judge it, move its state, feed the baseline; then
    /// <paramref name="idleWindows"/> windows without requests (the detector was not called: nothing arrived).
    /// </summary>
    private void Close(AnomalyKey key, Track track, AnomalyPolicy policy, DateTimeOffset end, long idleWindows)
    {
        var spec = policy.Spec;
        var verdict = Judge(key, track, policy, end, partial: false);
        track.LastEvidence = verdict.Evidence;
        if (verdict.Anomalous)
        {
            track.LastAnomalous = end;
            if (track.State == AnomalyState.Normal && end - track.FirstSeen >= spec.MinimumHistory)
            {
                Move(key, track, policy, AnomalyState.Throttled, end, verdict.Reason, verdict.Evidence);
            }
            else if (track.State == AnomalyState.Throttled && end - track.Since >= spec.QuarantineAfter)
            {
                Move(key, track, policy, AnomalyState.Quarantined, end,
                    $"still anomalous {Durations(end - track.Since)} after the throttle (quarantineAfter {Durations(spec.QuarantineAfter)}): {verdict.Reason}", verdict.Evidence);
            }
        }
        // While it learns (minimumHistory), every window feeds the baseline: a caller that is busy from the start is
        // normal at its own rate. After that, only windows that are not anomalous do.
        if (!verdict.Anomalous || end - track.FirstSeen < spec.MinimumHistory)
        {
            track.Feed(verdict.Evidence.RatePerMinute, track.Count > 0 ? verdict.Evidence.ErrorRatio : null, Alpha(spec));
        }
        if (idleWindows > 0)
        {
            track.Idle(idleWindows, Alpha(spec));
        }
        track.Count = 0;
        track.Errors = 0;
        var quietEnd = end + (idleWindows * _options.Window);
        var quietSince = track.LastAnomalous is { } last && last > track.Since ? last : track.Since;
        if (track.State != AnomalyState.Normal && quietEnd - quietSince >= spec.CoolOff)
        {
            var back = track.State == AnomalyState.Quarantined ? AnomalyState.Throttled : AnomalyState.Normal;
            Move(key, track, policy, back, quietEnd, $"quiet for {Durations(quietEnd - quietSince)} (coolOff {Durations(spec.CoolOff)})", track.LastEvidence);
        }
    }

    private double Alpha(AnomalyPolicySpec spec) => 1 - Math.Pow(2, -_options.Window / spec.HalfLife);

    private readonly record struct Verdict(bool Anomalous, string Reason, AnomalyEvidence Evidence);

    /// <summary>Judges the caller's current window (<paramref name="partial"/>: while it fills, on its rate only).</summary>
    private Verdict Judge(AnomalyKey key, Track track, AnomalyPolicy policy, DateTimeOffset now, bool partial)
    {
        var spec = policy.Spec;
        var perMinute = 60 / _options.Window.TotalSeconds;
        var rate = track.Count * perMinute;
        var baseline = track.Baseline;
        var errorRatio = track.Count > 0 ? track.Errors / (double)track.Count : 0;
        var routeCount = _routeCounts.GetValueOrDefault((key.Workload, key.Route));
        var share = routeCount > 0 ? track.Count / (double)routeCount : 0;
        var evidence = new AnomalyEvidence(rate, baseline, errorRatio, track.BaselineErrorRatio, track.Count, share, spec.Multiple, spec.MinimumRate,
            spec.MaxErrorRatio, now - track.FirstSeen);
        if (rate >= spec.MinimumRate && rate > spec.Multiple * baseline && share >= _options.DominantShare)
        {
            return new Verdict(true, string.Create(CultureInfo.InvariantCulture,
                $"{rate:0.#}/min is {(baseline > 0 ? $"{rate / baseline:0.#}x" : "above")} the baseline {baseline:0.##}/min (multiple {spec.Multiple:0.##}, minimumRate {spec.MinimumRate}/min, {share:P0} of the route)"), evidence);
        }
        if (!partial && track.Count >= _options.MinimumErrorSample && errorRatio > spec.MaxErrorRatio && track.BaselineErrorRatio < spec.MaxErrorRatio)
        {
            return new Verdict(true, string.Create(CultureInfo.InvariantCulture,
                $"error ratio {errorRatio:0.##} over {track.Count} requests, baseline {track.BaselineErrorRatio:0.##} (maxErrorRatio {spec.MaxErrorRatio:0.##})"), evidence);
        }
        return new Verdict(false, "", evidence);
    }

    private void Move(AnomalyKey key, Track track, AnomalyPolicy policy, AnomalyState to, DateTimeOffset at, string reason, AnomalyEvidence? evidence)
    {
        var from = track.State;
        track.State = to;
        track.Since = at;
        track.PolicyName = $"{policy.Metadata.Namespace}/{policy.Metadata.Name}";
        track.Mode = policy.Spec.Mode;
        evidence ??= track.LastEvidence ?? new AnomalyEvidence(0, track.Baseline, 0, track.BaselineErrorRatio, 0, 0, policy.Spec.Multiple, policy.Spec.MinimumRate, policy.Spec.MaxErrorRatio, at - track.FirstSeen);
        track.LastEvidence = evidence;
        var action = policy.Spec.Mode == AnomalyMode.DryRun ? "none (DryRun)"
            : !_leadership.IsLeading ? "none (this replica does not lead)"
            : to switch
            {
                AnomalyState.Throttled => $"throttled to {policy.Spec.ThrottleRate}/min",
                AnomalyState.Quarantined => policy.Spec.RevokeOnQuarantine && key.Subject.Length == 0 ? "quarantined (403), certificates revoked" : "quarantined (403)",
                _ => "restriction withdrawn",
            };
        var entry = new AnomalyEvent(_nextEventId++, at, key, from, to, track.PolicyName, track.Mode, reason, action, evidence);
        _events.Enqueue(entry);
        while (_events.Count > _options.MaxEvents)
        {
            _events.Dequeue();
        }
        _metrics.Transition(from, to, track.Mode);
        AnomalyLog.Transition(_logger, entry.Id, key.Principal, key.Workload.ToString(), key.Route, from, to, track.Mode, reason, action);
    }

    /// <summary>A clock that stepped back makes no negative age (a caller seen "in the future" would wait longer for its history).</summary>
    private static TimeSpan Clamp(TimeSpan seen) => seen < TimeSpan.Zero ? TimeSpan.Zero : seen;

    private Track? TrackFor(AnomalyKey key, AnomalyPolicy policy, DateTimeOffset firstSeen)
    {
        if (_tracks.TryGetValue(key, out var track))
        {
            return track;
        }
        if (_tracks.Count >= _options.MaxKeys && !Evict())
        {
            return null;
        }
        track = new Track(firstSeen) { PolicyName = $"{policy.Metadata.Namespace}/{policy.Metadata.Name}", Mode = policy.Spec.Mode };
        _tracks.Add(key, track);
        return track;
    }

    /// <summary>Forgets the least recently seen tenth of the normal tracks; false when none is normal (then nothing new is tracked).</summary>
    private bool Evict()
    {
        var victims = _tracks.Where(t => t.Value.State == AnomalyState.Normal).OrderBy(t => t.Value.LastSeen).Take(Math.Max(1, _options.MaxKeys / 10)).Select(t => t.Key).ToList();
        foreach (var key in victims)
        {
            _tracks.Remove(key);
        }
        return victims.Count > 0;
    }

    /// <summary>Recomputes what Enforce policies ask for; true when it changed.</summary>
    private bool UpdateRestrictions()
    {
        var next = _tracks
            .Where(t => t.Value.State != AnomalyState.Normal && _policies.For(t.Key.Workload) is { Spec.Mode: AnomalyMode.Enforce })
            .Select(t => Restriction(t.Key, t.Value))
            .OrderBy(r => r.Workload.Namespace, StringComparer.Ordinal).ThenBy(r => r.Workload.Service, StringComparer.Ordinal)
            .ThenBy(r => r.Principal, StringComparer.Ordinal).ThenBy(r => r.Route, StringComparer.Ordinal)
            .ToImmutableArray();
        if (next.SequenceEqual(_restrictions))
        {
            return false;
        }
        _restrictions = next;
        return true;
    }

    private CallerRestriction Restriction(AnomalyKey key, Track track)
    {
        var policy = _policies.For(key.Workload)!;
        var quarantined = track.State == AnomalyState.Quarantined;
        return new CallerRestriction(key.Workload, key.Caller, key.Subject, key.Route,
            quarantined ? RestrictionAction.Quarantine : RestrictionAction.Throttle,
            quarantined ? 0 : policy.Spec.ThrottleRate,
            $"anomaly: {key.Principal} {(quarantined ? "quarantined" : "throttled")} on {key.Route} since {track.Since:yyyy-MM-ddTHH:mm:ssZ} by AnomalyPolicy {track.PolicyName}");
    }

    private static string Durations(TimeSpan span) => ZeroTrustMesh.Identity.Durations.Format(TimeSpan.FromSeconds(Math.Round(span.TotalSeconds)));

    /// <summary>
    /// What survives a restart and a change of leader (<see cref="AnomalyStateSync"/> stores it): every track's state and
    /// baseline, and the events. Not the window in progress. Null when nothing changed since the last call, unless
    /// <paramref name="always"/>. At most <see cref="AnomalyOptions.MaxPersistedTracks"/> tracks: every restricted one,
    /// then the most recently seen normal ones; <see cref="AnomalyStateDocument.LeftOut"/> counts the rest (they learn again).
    /// </summary>
    public AnomalyStateDocument? Export(bool always = false)
    {
        lock (_gate)
        {
            if (!_dirty && !always)
            {
                return null;
            }
            _dirty = false;
            var tracks = _tracks
                .OrderBy(t => t.Value.State == AnomalyState.Normal ? 1 : 0).ThenByDescending(t => t.Value.LastSeen)
                .Select(t => t.Value.ToState(t.Key))
                .ToList();
            var kept = tracks.Take(_options.MaxPersistedTracks).ToList();
            return new AnomalyStateDocument(_time.GetUtcNow(), kept, [.. _events], _nextEventId, tracks.Count - kept.Count);
        }
    }

    /// <summary>
    /// Takes a stored state: at start (a restart lifts no restriction, forgets no baseline) and, on a replica that does
    /// not lead, the leader's state every window (so it pushes the same restrictions to its own sidecars, and has the
    /// baselines when it becomes leader). Replaces every track and event; raises <see cref="RestrictionsChanged"/>.
    /// </summary>
    public void Import(AnomalyStateDocument state)
    {
        bool changed;
        lock (_gate)
        {
            _tracks.Clear();
            foreach (var track in state.Tracks.Take(_options.MaxKeys))
            {
                _tracks[track.Key] = Track.From(track);
            }
            _events.Clear();
            foreach (var entry in state.Events.TakeLast(_options.MaxEvents))
            {
                _events.Enqueue(entry);
            }
            _nextEventId = Math.Max(_nextEventId, state.NextEventId);
            _routeCounts.Clear();
            _windowStart = Align(_time.GetUtcNow());
            changed = UpdateRestrictions();
        }
        if (changed)
        {
            RestrictionsChanged?.Invoke(Restrictions);
        }
    }

    public void Dispose() => _timer.Dispose();

    /// <summary>One caller on one route: its window so far, its baseline, its state.</summary>
    private sealed class Track(DateTimeOffset firstSeen)
    {
        private double _rate;
        private double _rateWeight;
        private double _errors;
        private double _errorWeight;

        public DateTimeOffset FirstSeen { get; } = firstSeen;

        public DateTimeOffset LastSeen { get; set; } = firstSeen;

        public long Count { get; set; }

        public long Errors { get; set; }

        public AnomalyState State { get; set; }

        public DateTimeOffset Since { get; set; } = firstSeen;

        public DateTimeOffset? LastAnomalous { get; set; }

        public string PolicyName { get; set; } = "";

        public AnomalyMode Mode { get; set; }

        public AnomalyEvidence? LastEvidence { get; set; }

        /// <summary>Requests per minute, bias-corrected (an EWMA started at 0 would call every young caller's rate a jump).</summary>
        public double Baseline => _rateWeight > 0 ? _rate / _rateWeight : 0;

        public double BaselineErrorRatio => _errorWeight > 0 ? _errors / _errorWeight : 0;

        public TrackState ToState(AnomalyKey key) =>
            new(key, FirstSeen, LastSeen, State, Since, LastAnomalous, PolicyName, Mode, LastEvidence, _rate, _rateWeight, _errors, _errorWeight);

        public static Track From(TrackState state) => new(state.FirstSeen)
        {
            LastSeen = state.LastSeen,
            State = state.State,
            Since = state.Since,
            LastAnomalous = state.LastAnomalous,
            PolicyName = state.Policy,
            Mode = state.Mode,
            LastEvidence = state.Evidence,
            _rate = state.Rate,
            _rateWeight = state.RateWeight,
            _errors = state.Errors,
            _errorWeight = state.ErrorWeight,
        };

        public void Feed(double ratePerMinute, double? errorRatio, double alpha)
        {
            _rate = ((1 - alpha) * _rate) + (alpha * ratePerMinute);
            _rateWeight = ((1 - alpha) * _rateWeight) + alpha;
            if (errorRatio is { } ratio)
            {
                _errors = ((1 - alpha) * _errors) + (alpha * ratio);
                _errorWeight = ((1 - alpha) * _errorWeight) + alpha;
            }
        }

        /// <summary><paramref name="windows"/> windows without a request: the rate baseline decays toward 0.</summary>
        public void Idle(long windows, double alpha)
        {
            var keep = Math.Pow(1 - alpha, windows);
            _rate *= keep;
            _rateWeight = 1 - ((1 - _rateWeight) * keep);
        }
    }
}
