using System.Collections.Frozen;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Sidecar.Inbound;

namespace ZeroTrustMesh.Sidecar.RateLimiting;

/// <summary>
/// The caller restrictions anomaly response pushed for this workload (issue 19, section 3), at one config version: a
/// quarantined caller is refused outright; a throttled one gets <c>requestsPerMinute</c> from a token bucket of its own
/// (at most one second's worth at once, so the throttle bites at once). A restriction names the caller by SPIFFE ID, or
/// by JWT subject (the validated token's <c>sub</c>, set by the JWT stage before this one), and a route: <c>*</c>, a
/// path template or a path. Callers with no restriction pay one dictionary lookup.
/// </summary>
internal sealed class CallerRestrictions
{
    public static readonly CallerRestrictions None = new([], null!);

    private readonly FrozenDictionary<string, Compiled[]> _byCaller;
    private readonly FrozenDictionary<string, Compiled[]> _bySubject;
    private readonly TokenBuckets _buckets;

    private CallerRestrictions(IReadOnlyList<CallerRestriction> restrictions, TokenBuckets buckets)
    {
        Count = restrictions.Count;
        _buckets = buckets;
        _byCaller = restrictions.Where(r => r.Subject.Length == 0).GroupBy(r => r.Caller, StringComparer.Ordinal)
            .ToFrozenDictionary(g => g.Key, g => g.Select(r => new Compiled(r)).ToArray(), StringComparer.Ordinal);
        _bySubject = restrictions.Where(r => r.Subject.Length > 0).GroupBy(r => r.Subject, StringComparer.Ordinal)
            .ToFrozenDictionary(g => g.Key, g => g.Select(r => new Compiled(r)).ToArray(), StringComparer.Ordinal);
    }

    public int Count { get; }

    public static CallerRestrictions Compile(IReadOnlyList<CallerRestriction> restrictions, TokenBuckets buckets) =>
        restrictions.Count == 0 ? None : new CallerRestrictions(restrictions, buckets);

    /// <summary>The refusal for this request, or null when no restriction refuses it.</summary>
    public Refusal? Check(InboundRequest request, ReadOnlySpan<char> path)
    {
        if (Count == 0)
        {
            return null;
        }
        string[]? segments = null;
        if (_byCaller.TryGetValue(request.CallerName, out var own) && Check(own, request.CallerName, path, ref segments) is { } refusal)
        {
            return refusal;
        }
        return _bySubject.Count > 0 && request.Claims is { } claims && claims.TryGetValue("sub", 0, out var subject) && _bySubject.TryGetValue(subject, out var bySubject)
            ? Check(bySubject, $"sub:{subject}", path, ref segments)
            : null;
    }

    private Refusal? Check(Compiled[] restrictions, string who, ReadOnlySpan<char> path, ref string[]? segments)
    {
        foreach (var restriction in restrictions)
        {
            if (!restriction.Matches(path, ref segments))
            {
                continue;
            }
            if (restriction.Source.Action == RestrictionAction.Quarantine)
            {
                return new Refusal(StatusCodes.Status403Forbidden, "anomaly_quarantined", $"quarantined by anomaly response: {restriction.Source.Reason}");
            }
            if (!_buckets.TryTake(restriction.Scope, who, restriction.Limit, out var retryAfter))
            {
                var seconds = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
                return new Refusal(StatusCodes.Status429TooManyRequests, "anomaly_throttled",
                    $"throttled by anomaly response to {restriction.Source.RequestsPerMinute}/min: {restriction.Source.Reason}; retry in {seconds}s") { Header = ("Retry-After", seconds) };
            }
        }
        return null;
    }

    private sealed class Compiled(CallerRestriction source)
    {
        private readonly ApiPathTemplate? _template = source.Route.Contains('{', StringComparison.Ordinal) ? new ApiPathTemplate(source.Route) : null;

        public CallerRestriction Source => source;

        /// <summary>Its own bucket per route: two restrictions of one caller never share tokens.</summary>
        public string Scope { get; } = $"anomaly:{source.Route}";

        public TokenBucket Limit { get; } = new(source.RequestsPerMinute, RateUnit.Minute, Math.Max(1, (source.RequestsPerMinute + 59) / 60));

        public bool Matches(ReadOnlySpan<char> path, ref string[]? segments)
        {
            if (source.Route == CallerRestriction.EveryRoute)
            {
                return true;
            }
            if (_template is null)
            {
                return path.SequenceEqual(source.Route);
            }
            segments ??= path.ToString().Split('/');
            return _template.Matches(segments);
        }
    }
}
