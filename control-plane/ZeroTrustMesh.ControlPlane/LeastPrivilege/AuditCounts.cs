using System.Security.Cryptography;
using System.Text.Json;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Observations;
using Microsoft.Extensions.DependencyInjection.Extensions;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using PolicyResource = ZeroTrustMesh.Policy.Model.PolicyResource;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.LeastPrivilege;

/// <summary>
/// Counts, per AUDIT AuthorizationPolicy, the requests sidecars saw it apply to and those no rule of it matched
/// (<c>Observation.audit_matched</c> and <c>audit_unmatched</c>): as ALLOW it would have denied them. That is how a
/// suggested policy tried as AUDIT shows it is safe to switch to ALLOW (would-deny stays 0 for legitimate traffic).
/// 1. Per content: a policy's generation is a digest of its spec (<see cref="GenerationOf"/>); when the spec changes the
///    counts start over, from the moment this replica saw the new content (<see cref="AuditPolicyRecord.Since"/>), and
///    observations stamped before it (decided under the old content) are not counted. Metadata (the suggestion's
///    evidence annotations) is not content.
/// 2. Kept in <see cref="IAuditCountStore"/> (the data directory, or one ConfigMap the replicas share): what this replica
///    counted since its last flush is added to the stored counts every <see cref="AuditCountOptions.FlushInterval"/> and at
///    stop (<see cref="FlushAsync"/>); counts only add up, so every replica adds its own and none has to lead.
/// 3. A report is the stored counts plus what this replica has not flushed yet: exact for its own sidecars, and for the
///    other replicas' up to their last flush. It lists every AUDIT policy in force, with 0 where none was counted.
/// Bounds: <see cref="MaxPolicies"/> policies counted per flush (further observations counted in
/// <see cref="OverCap"/>), the last <see cref="RecentSamples"/> would-deny requests per policy.
/// </summary>
internal sealed class AuditCounts(IAuditCountStore store, TimeProvider time, ILogger<AuditCounts> logger) : IObservationConsumer
{
    public const int MaxPolicies = 10_000;
    public const int RecentSamples = 5;

    private readonly Lock _lock = new();
    /// <summary>One flush or report at a time: a report never sees counts both in flight and stored.</summary>
    private readonly SemaphoreSlim _io = new(1, 1);
    private Dictionary<string, Tally> _pending = new(StringComparer.Ordinal);
    private Dictionary<string, (string Generation, DateTimeOffset Since)> _inForce = new(StringComparer.Ordinal);
    private bool _changed;
    private long _overCap;
    private string _lastFailure = "";

    /// <summary>Observations of policies beyond <see cref="MaxPolicies"/>, not counted.</summary>
    public long OverCap => Interlocked.Read(ref _overCap);

    /// <summary>Where the counts are kept, for messages.</summary>
    public string Location => store.Location;

    /// <summary>The AUDIT AuthorizationPolicies in force now: a policy whose spec changed starts over now.</summary>
    public void Follow(IEnumerable<PolicyResource> resources) => Follow(resources, fromChange: true);

    /// <summary>
    /// Follows <paramref name="config"/>'s policies from now on. Not by version number: in Kubernetes a content that
    /// comes back gets its earlier number again. The store raises its changes in order; the first read is taken only
    /// when no change came before it.
    /// </summary>
    public void Follow(ConfigStore config)
    {
        config.Changed += state => Follow(state.Resources.Values.Select(r => r.Document.Resource), fromChange: true);
        Follow(config.Current.Resources.Values.Select(r => r.Document.Resource), fromChange: false);
    }

    private void Follow(IEnumerable<PolicyResource> resources, bool fromChange)
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            if (!fromChange && _changed)
            {
                return;
            }
            _changed |= fromChange;
            var next = new Dictionary<string, (string, DateTimeOffset)>(StringComparer.Ordinal);
            foreach (var policy in resources.OfType<AuthorizationPolicy>().Where(p => p.Spec.Action == PolicyAction.Audit))
            {
                var name = $"{policy.Metadata.Namespace}/{policy.Metadata.Name}";
                var generation = GenerationOf(policy);
                next[name] = _inForce.TryGetValue(name, out var known) && known.Generation == generation ? known : (generation, now);
            }
            _inForce = next;
        }
    }

    /// <summary>
    /// Takes the stored counts' start (their <see cref="AuditPolicyRecord.Since"/>) for policies whose content is the
    /// stored one: after a restart, counting goes on from where it began, and a sidecar's buffered observations from
    /// before the restart still count.
    /// </summary>
    public async Task ResumeAsync(CancellationToken cancellation)
    {
        var stored = await LoadAsync(cancellation);
        lock (_lock)
        {
            foreach (var record in stored.Policies)
            {
                if (_inForce.TryGetValue(record.Policy, out var known) && known.Generation == record.Generation && record.Since < known.Since)
                {
                    _inForce[record.Policy] = (known.Generation, record.Since);
                }
            }
        }
    }

    public void Consume(ObservationReporter reporter, IReadOnlyList<Observation> observations)
    {
        lock (_lock)
        {
            foreach (var o in observations)
            {
                if (o.AuditMatched.Count + o.AuditUnmatched.Count == 0)
                {
                    continue;
                }
                var at = o.At?.ToDateTimeOffset() ?? time.GetUtcNow();
                foreach (var policy in o.AuditMatched)
                {
                    TallyOf(policy, at)?.Add(at, wouldDeny: null);
                }
                foreach (var policy in o.AuditUnmatched)
                {
                    TallyOf(policy, at)?.Add(at, wouldDeny: $"{o.Caller} {o.Method} {o.Path}");
                }
            }
        }
    }

    /// <summary>
    /// Adds what this replica counted since the last flush to the stored counts. When the store fails, the counts stay
    /// for the next flush, and the failure is logged once per reason.
    /// </summary>
    public async Task FlushAsync(CancellationToken cancellation)
    {
        await _io.WaitAsync(cancellation);
        try
        {
            Dictionary<string, Tally> taken;
            lock (_lock)
            {
                if (_pending.Count == 0)
                {
                    return;
                }
                (taken, _pending) = (_pending, new Dictionary<string, Tally>(StringComparer.Ordinal));
            }
            var records = taken.Values.Select(t => t.ToRecord()).ToList();
            try
            {
                await store.UpdateAsync(stored => stored.With(records, MaxPolicies), cancellation);
                _lastFailure = "";
            }
            catch (Exception e) when (e is IOException || (e is OperationCanceledException && cancellation.IsCancellationRequested))
            {
                lock (_lock)
                {
                    foreach (var record in records)
                    {
                        _pending[record.Policy] = _pending.TryGetValue(record.Policy, out var newer)
                            ? Tally.From(AuditPolicyRecord.Merge(record, newer.ToRecord()))
                            : Tally.From(record);
                    }
                }
                if (e is IOException && e.Message != _lastFailure)
                {
                    _lastFailure = e.Message;
                    LeastPrivilegeLog.CountsNotStored(logger, store.Location, e.Message);
                }
                if (e is OperationCanceledException)
                {
                    throw;
                }
            }
        }
        finally
        {
            _io.Release();
        }
    }

    /// <summary>Every AUDIT policy in force, ordered by name; only those in <paramref name="ns"/> when it is not empty.</summary>
    /// <exception cref="IOException">The stored counts cannot be read.</exception>
    public async Task<IReadOnlyList<AuditPolicyRecord>> ReportAsync(string ns, CancellationToken cancellation)
    {
        await _io.WaitAsync(cancellation);
        try
        {
            var stored = (await LoadAsync(cancellation)).Policies.ToDictionary(r => r.Policy, StringComparer.Ordinal);
            lock (_lock)
            {
                return [.. _inForce
                    .Where(p => ns.Length == 0 || p.Key.StartsWith(ns + "/", StringComparison.Ordinal))
                    .OrderBy(p => p.Key, StringComparer.Ordinal)
                    .Select(p =>
                    {
                        // Another content counted (stored, or by a replica that saw it first) is replaced by the newer one.
                        var record = AuditPolicyRecord.Empty(p.Key, p.Value.Generation, p.Value.Since);
                        if (stored.TryGetValue(p.Key, out var kept))
                        {
                            record = AuditPolicyRecord.Merge(kept, record);
                        }
                        return _pending.TryGetValue(p.Key, out var tally) ? AuditPolicyRecord.Merge(record, tally.ToRecord()) : record;
                    })];
            }
        }
        finally
        {
            _io.Release();
        }
    }

    /// <summary>
    /// A policy's content: 16 hex digits of the SHA-256 of its spec's canonical JSON (the form sidecars receive), so the
    /// same spec has the same generation on every replica and after a restart, however it was written.
    /// </summary>
    public static string GenerationOf(AuthorizationPolicy policy)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            AuthorizationPolicyKind.Instance.WriteSpec(policy, json);
            json.WriteEndObject();
        }
        return Convert.ToHexStringLower(SHA256.HashData(buffer.ToArray()))[..16];
    }

    private async Task<AuditCountsDocument> LoadAsync(CancellationToken cancellation)
    {
        try
        {
            return await store.LoadAsync(cancellation);
        }
        catch (InvalidDataException e)
        {
            // The next flush replaces it (the store says so in its log).
            LeastPrivilegeLog.CountsUnreadable(logger, store.Location, e.Message);
            return AuditCountsDocument.None;
        }
    }

    /// <summary>The policy's tally for an observation at <paramref name="at"/>; null for a policy not (or no longer) in force, an observation from before its content, or beyond the cap. Under the lock.</summary>
    private Tally? TallyOf(string policy, DateTimeOffset at)
    {
        if (!_inForce.TryGetValue(policy, out var generation) || at < generation.Since)
        {
            return null;
        }
        if (_pending.TryGetValue(policy, out var tally) && tally.Generation == generation.Generation)
        {
            return tally;
        }
        if (tally is null && _pending.Count >= MaxPolicies)
        {
            Interlocked.Increment(ref _overCap);
            return null;
        }
        return _pending[policy] = new Tally(policy, generation.Generation, generation.Since);
    }

    /// <summary>A policy's counts since the last flush, for one generation; under the counts' lock.</summary>
    private sealed class Tally(string policy, string generation, DateTimeOffset since)
    {
        private readonly Queue<AuditSample> _recent = new();
        private long _requests;
        private long _wouldDeny;
        private DateTimeOffset? _first;
        private DateTimeOffset? _last;
        private DateTimeOffset? _lastWouldDeny;

        public string Generation => generation;

        public static Tally From(AuditPolicyRecord record)
        {
            var tally = new Tally(record.Policy, record.Generation, record.Since)
            {
                _requests = record.Requests,
                _wouldDeny = record.WouldDeny,
                _first = record.FirstSeen,
                _last = record.LastSeen,
                _lastWouldDeny = record.LastWouldDeny,
            };
            foreach (var sample in Enumerable.Reverse(record.Recent))
            {
                tally._recent.Enqueue(sample);
            }
            return tally;
        }

        public void Add(DateTimeOffset at, string? wouldDeny)
        {
            _requests++;
            _first = _first is { } f && f <= at ? f : at;
            _last = _last is { } l && l >= at ? l : at;
            if (wouldDeny is null)
            {
                return;
            }
            _wouldDeny++;
            _lastWouldDeny = _lastWouldDeny is { } w && w >= at ? w : at;
            if (_recent.Count == RecentSamples)
            {
                _recent.Dequeue();
            }
            _recent.Enqueue(new AuditSample(at, wouldDeny.Length > 300 ? wouldDeny[..300] : wouldDeny));
        }

        public AuditPolicyRecord ToRecord() =>
            new(policy, generation, since, _requests, _wouldDeny, _first, _last, _lastWouldDeny, [.. _recent.Reverse()]);
    }
}

internal sealed class AuditCountOptions
{
    /// <summary>How often a replica adds what it counted to the stored counts: what a crash can lose, and how far behind another replica's report may be.</summary>
    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>Flushes the AUDIT counts every <see cref="AuditCountOptions.FlushInterval"/>, and at stop; at start, resumes the stored counts.</summary>
internal sealed class AuditCountFlush(AuditCounts counts, AuditCountOptions options, TimeProvider time) : BackgroundService
{

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await counts.ResumeAsync(cancellationToken);
        }
        catch (IOException)
        {
            // Counting starts from now; the store is tried again at the first flush, which logs why it fails.
        }
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(options.FlushInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping))
            {
                await counts.FlushAsync(stopping);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // stopping: StopAsync flushes once more
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await counts.FlushAsync(cancellationToken);
    }
}

internal static partial class LeastPrivilegeLog
{
    [LoggerMessage(EventId = 2300, Level = LogLevel.Warning, Message = "AUDIT counts not stored in {Location} ({Reason}): kept, tried again at the next flush")]
    public static partial void CountsNotStored(ILogger logger, string location, string reason);

    [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "AUDIT counts in {Location} are unreadable ({Reason}): the next flush replaces them")]
    public static partial void CountsUnreadable(ILogger logger, string location, string reason);
}

internal static class LeastPrivilegeServices
{
    /// <summary>
    /// The AUDIT would-deny counts as an observation consumer, following the config's AUDIT policies, kept in the data
    /// directory unless a deployment mode registered its own store first (Kubernetes: <see cref="ConfigMapAuditCountStore"/>).
    /// The suggestions read the API inventory.
    /// </summary>
    public static IServiceCollection AddLeastPrivilege(this IServiceCollection services)
    {
        services.TryAddSingleton(new AuditCountOptions());
        services.TryAddSingleton<IAuditCountStore>(sp => new FileAuditCountStore(sp.GetRequiredService<ControlPlaneOptions>().DataDir));
        services.AddSingleton(sp =>
        {
            var counts = ActivatorUtilities.CreateInstance<AuditCounts>(sp);
            counts.Follow(sp.GetRequiredService<ConfigStore>());
            return counts;
        });
        services.AddSingleton<IObservationConsumer>(sp => sp.GetRequiredService<AuditCounts>());
        services.AddHostedService(sp =>
        {
            var flush = ActivatorUtilities.CreateInstance<AuditCountFlush>(sp);
            // Flushed as soon as the stop begins, too (as the API inventory is saved): draining the sidecars' streams
            // may outlast what a supervisor waits for after SIGTERM.
            sp.GetService<IHostApplicationLifetime>()?.ApplicationStopping.Register(() =>
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                try
                {
                    sp.GetRequiredService<AuditCounts>().FlushAsync(timeout.Token).GetAwaiter().GetResult();
                }
                catch (OperationCanceledException)
                {
                    // StopAsync tries once more
                }
            });
            return flush;
        });
        return services;
    }
}
