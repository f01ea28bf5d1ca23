using System.Collections.Concurrent;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Sidecar.RateLimiting;

internal sealed class RateLimitOptions
{
    /// <summary>Buckets kept at most; beyond that idle ones are evicted (a full bucket first: forgetting it changes nothing).</summary>
    public int MaxBuckets { get; init; } = 10_000;
}

/// <summary>
/// Every token bucket of the sidecar, keyed by (scope, caller), on the sidecar's clock. Shared across policy snapshots
/// so a push does not reset callers' budgets; a bucket whose limit changed is carried over with its tokens capped.
/// Bounded: past <see cref="RateLimitOptions.MaxBuckets"/>, full buckets (indistinguishable from new ones) are dropped,
/// then the least recently used, so a flood of distinct callers cannot grow memory without limit.
/// </summary>
internal sealed class TokenBuckets(RateLimitOptions options, TimeProvider time)
{
    private readonly ConcurrentDictionary<(string Scope, string Caller), Bucket> _buckets = new();
    private readonly Lock _evicting = new();

    public int Count => _buckets.Count;

    /// <summary>Takes one token from the caller's bucket of <paramref name="scope"/>; when there is none, says how long until there is.</summary>
    public bool TryTake(string scope, string caller, TokenBucket limit, out TimeSpan retryAfter)
    {
        var now = time.GetTimestamp();
        var key = (scope, caller);
        if (!_buckets.TryGetValue(key, out var bucket))
        {
            bucket = _buckets.GetOrAdd(key, static (_, state) => new Bucket(state.limit, state.now), (limit, now));
            if (_buckets.Count > options.MaxBuckets)
            {
                Evict(now);
            }
        }
        return bucket.TryTake(limit, now, time.TimestampFrequency, out retryAfter);
    }

    /// <summary>Gives back a token taken for a request that another bucket then refused.</summary>
    public void Refund(string scope, string caller)
    {
        if (_buckets.TryGetValue((scope, caller), out var bucket))
        {
            bucket.Refund();
        }
    }

    private void Evict(long now)
    {
        lock (_evicting)
        {
            if (_buckets.Count <= options.MaxBuckets)
            {
                return;
            }
            foreach (var (key, bucket) in _buckets)
            {
                if (bucket.IsFull(now, time.TimestampFrequency))
                {
                    _buckets.TryRemove(key, out _);
                }
            }
            // Still too many callers mid-budget: drop the least recently used down to 90 %, so this runs rarely.
            var target = options.MaxBuckets - (options.MaxBuckets / 10);
            if (_buckets.Count > target)
            {
                foreach (var (key, _) in _buckets.OrderBy(b => b.Value.LastUsed).Take(_buckets.Count - target).ToList())
                {
                    _buckets.TryRemove(key, out _);
                }
            }
        }
    }

    /// <summary>One token bucket: capacity <c>burst</c> (or requestsPerUnit), refilled continuously at requestsPerUnit per unit.</summary>
    internal sealed class Bucket(TokenBucket limit, long now)
    {
        private readonly Lock _lock = new();
        private TokenBucket _limit = limit;
        private double _tokens = Capacity(limit);
        private long _updated = now;

        public long LastUsed { get; private set; } = now;

        public static double Capacity(TokenBucket limit) => limit.Burst > 0 ? limit.Burst : limit.RequestsPerUnit;

        /// <summary>Tokens per second.</summary>
        public static double Rate(TokenBucket limit) => limit.RequestsPerUnit / limit.Unit switch
        {
            RateUnit.Second => 1.0,
            RateUnit.Minute => 60.0,
            RateUnit.Hour => 3600.0,
            _ => throw new ArgumentOutOfRangeException(nameof(limit), limit.Unit, "unknown rate unit"),
        };

        public bool TryTake(TokenBucket limit, long now, long frequency, out TimeSpan retryAfter)
        {
            lock (_lock)
            {
                if (_limit != limit)
                {
                    // The policy changed this limit: keep what the caller has left, within the new capacity.
                    _limit = limit;
                    _tokens = Math.Min(_tokens, Capacity(limit));
                }
                Refill(now, frequency);
                LastUsed = now;
                if (_tokens >= 1)
                {
                    _tokens -= 1;
                    retryAfter = TimeSpan.Zero;
                    return true;
                }
                retryAfter = TimeSpan.FromSeconds((1 - _tokens) / Rate(_limit));
                return false;
            }
        }

        public void Refund()
        {
            lock (_lock)
            {
                _tokens = Math.Min(_tokens + 1, Capacity(_limit));
            }
        }

        public bool IsFull(long now, long frequency)
        {
            lock (_lock)
            {
                Refill(now, frequency);
                return _tokens >= Capacity(_limit);
            }
        }

        private void Refill(long now, long frequency)
        {
            if (now > _updated)
            {
                _tokens = Math.Min(Capacity(_limit), _tokens + ((now - _updated) / (double)frequency * Rate(_limit)));
                _updated = now;
            }
        }
    }
}
