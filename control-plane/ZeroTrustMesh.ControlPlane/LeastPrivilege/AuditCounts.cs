using System.Collections.Concurrent;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.LeastPrivilege;

/// <summary>One AUDIT policy's counts (<c>ztmctl policy audit-report</c>).</summary>
internal sealed record AuditPolicyCounts(
    string Policy,
    long Requests,
    long WouldDeny,
    DateTimeOffset FirstSeen,
    DateTimeOffset LastSeen,
    DateTimeOffset? LastWouldDeny,
    IReadOnlyList<string> RecentWouldDeny);

/// <summary>
/// Counts, per AUDIT AuthorizationPolicy, the requests sidecars saw it apply to and those no rule of it matched
/// (<c>Observation.audit_matched</c> and <c>audit_unmatched</c>): as ALLOW it would have denied them. That is how a
/// suggested policy tried as AUDIT shows it is safe to switch to ALLOW (would-deny stays 0 for legitimate traffic).
/// In memory, per replica, since the start; at most <see cref="MaxPolicies"/> policies are counted (the set's own bound
/// on rules keeps real sets far below it), further ones are counted in <see cref="OverCap"/>.
/// </summary>
internal sealed class AuditCounts : IObservationConsumer
{
    public const int MaxPolicies = 10_000;
    public const int RecentSamples = 5;

    private readonly ConcurrentDictionary<string, Counts> _policies = new(StringComparer.Ordinal);
    private long _overCap;

    /// <summary>Observations of policies beyond <see cref="MaxPolicies"/>, not counted.</summary>
    public long OverCap => Interlocked.Read(ref _overCap);

    public void Consume(ObservationReporter reporter, IReadOnlyList<Observation> observations)
    {
        foreach (var o in observations)
        {
            if (o.AuditMatched.Count + o.AuditUnmatched.Count == 0)
            {
                continue;
            }
            var at = o.At.ToDateTimeOffset();
            foreach (var policy in o.AuditMatched)
            {
                CountsOf(policy)?.Add(at, wouldDeny: null);
            }
            foreach (var policy in o.AuditUnmatched)
            {
                CountsOf(policy)?.Add(at, wouldDeny: $"{o.Caller} {o.Method} {o.Path}");
            }
        }
    }

    /// <summary>The policies counted, ordered by name; only those in <paramref name="ns"/> when it is not empty.</summary>
    public IReadOnlyList<AuditPolicyCounts> Report(string ns) =>
        [.. _policies
            .Where(p => ns.Length == 0 || p.Key.StartsWith(ns + "/", StringComparison.Ordinal))
            .OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => p.Value.View(p.Key))];

    private Counts? CountsOf(string policy)
    {
        if (_policies.TryGetValue(policy, out var counts))
        {
            return counts;
        }
        if (_policies.Count >= MaxPolicies || policy.Length > 320)
        {
            Interlocked.Increment(ref _overCap);
            return null;
        }
        return _policies.GetOrAdd(policy, _ => new Counts());
    }

    private sealed class Counts
    {
        private readonly Lock _lock = new();
        private readonly Queue<string> _recent = new();
        private long _requests;
        private long _wouldDeny;
        private DateTimeOffset _first = DateTimeOffset.MaxValue;
        private DateTimeOffset _last = DateTimeOffset.MinValue;
        private DateTimeOffset? _lastWouldDeny;

        public void Add(DateTimeOffset at, string? wouldDeny)
        {
            lock (_lock)
            {
                _requests++;
                _first = at < _first ? at : _first;
                _last = at > _last ? at : _last;
                if (wouldDeny is null)
                {
                    return;
                }
                _wouldDeny++;
                _lastWouldDeny = _lastWouldDeny is { } l && l > at ? l : at;
                if (_recent.Count == RecentSamples)
                {
                    _recent.Dequeue();
                }
                _recent.Enqueue(wouldDeny.Length > 300 ? wouldDeny[..300] : wouldDeny);
            }
        }

        public AuditPolicyCounts View(string policy)
        {
            lock (_lock)
            {
                return new AuditPolicyCounts(policy, _requests, _wouldDeny, _first, _last, _lastWouldDeny, [.. _recent.Reverse()]);
            }
        }
    }
}

internal static class LeastPrivilegeServices
{
    /// <summary>The AUDIT would-deny counts as an observation consumer (the suggestions read the API inventory).</summary>
    public static IServiceCollection AddLeastPrivilege(this IServiceCollection services)
    {
        services.AddSingleton<AuditCounts>();
        services.AddSingleton<IObservationConsumer>(sp => sp.GetRequiredService<AuditCounts>());
        return services;
    }
}
