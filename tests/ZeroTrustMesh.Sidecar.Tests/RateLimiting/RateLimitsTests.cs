using System.Collections.Immutable;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.RateLimiting;

namespace ZeroTrustMesh.Sidecar.Tests.RateLimiting;

/// <summary>Token buckets on a fake clock: burst, refill, Retry-After, per-caller and per-route buckets, overrides, and the bound on their number.</summary>
public sealed class RateLimitsTests
{
    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    private const string Payments = "spiffe://cluster.local/ns/shop/sa/payments";
    private static readonly WorkloadRef Orders = new("shop", "orders");

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    private static RateLimitPolicy Policy(TokenBucket? perCaller, ImmutableArray<RouteRateLimit> routes = default, ImmutableArray<PrincipalRateLimit> overrides = default, string name = "limit") =>
        new(new ResourceMetadata(name, "shop"),
            new RateLimitPolicySpec(new WorkloadSelector("orders"), perCaller, routes.IsDefault ? [] : routes, overrides.IsDefault ? [] : overrides));

    private RateLimits Compile(TokenBuckets buckets, params RateLimitPolicy[] policies) => RateLimits.Compile(Orders, policies, buckets);

    [Fact]
    public void Burst_is_spent_then_refused_with_the_time_until_the_next_token_which_then_arrives()
    {
        var limits = Compile(new TokenBuckets(new RateLimitOptions(), _time), Policy(new TokenBucket(3, RateUnit.Minute, 3)));
        for (var i = 0; i < 3; i++)
        {
            Assert.True(limits.TryAcquire(Frontend, "GET", "/orders/1").Allowed);
        }
        var refused = limits.TryAcquire(Frontend, "GET", "/orders/1");
        Assert.False(refused.Allowed);
        Assert.Equal("shop/limit", refused.Policy);
        Assert.Equal(20, refused.RetryAfterSeconds); // 3 per minute: one token every 20 s

        _time.Advance(TimeSpan.FromSeconds(19));
        Assert.False(limits.TryAcquire(Frontend, "GET", "/orders/1").Allowed);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(limits.TryAcquire(Frontend, "GET", "/orders/1").Allowed);
        Assert.False(limits.TryAcquire(Frontend, "GET", "/orders/1").Allowed);
    }

    [Fact]
    public void Each_caller_has_its_own_bucket_and_an_override_replaces_the_per_caller_limit()
    {
        var limits = Compile(new TokenBuckets(new RateLimitOptions(), _time),
            Policy(new TokenBucket(1, RateUnit.Hour, 0), overrides: [new PrincipalRateLimit(Payments, new TokenBucket(5, RateUnit.Hour, 0))]));
        Assert.True(limits.TryAcquire(Frontend, "GET", "/").Allowed);
        Assert.False(limits.TryAcquire(Frontend, "GET", "/").Allowed);
        for (var i = 0; i < 5; i++)
        {
            Assert.True(limits.TryAcquire(Payments, "GET", "/").Allowed);
        }
        var refused = limits.TryAcquire(Payments, "GET", "/");
        Assert.False(refused.Allowed);
        Assert.Equal(720, refused.RetryAfterSeconds);
    }

    [Fact]
    public void A_route_adds_its_own_bucket_for_matching_requests_and_a_refusal_charges_nothing()
    {
        var limits = Compile(new TokenBuckets(new RateLimitOptions(), _time),
            Policy(new TokenBucket(3, RateUnit.Second, 0), routes: [new RouteRateLimit("/orders/*", ["POST"], new TokenBucket(1, RateUnit.Second, 0))]));
        Assert.True(limits.TryAcquire(Frontend, "POST", "/orders/1").Allowed);
        var refused = limits.TryAcquire(Frontend, "POST", "/orders/2");
        Assert.False(refused.Allowed);
        Assert.Equal(1, refused.RetryAfterSeconds);
        // The refused POST did not spend a per-caller token: two are left for other requests.
        Assert.True(limits.TryAcquire(Frontend, "GET", "/orders/1").Allowed);
        Assert.True(limits.TryAcquire(Frontend, "POST", "/other").Allowed);
        Assert.False(limits.TryAcquire(Frontend, "GET", "/orders/1").Allowed);
    }

    [Fact]
    public void A_flood_of_distinct_callers_keeps_the_number_of_buckets_bounded()
    {
        var buckets = new TokenBuckets(new RateLimitOptions { MaxBuckets = 100 }, _time);
        var limits = Compile(buckets, Policy(new TokenBucket(10, RateUnit.Minute, 0)));
        for (var i = 0; i < 5_000; i++)
        {
            limits.TryAcquire($"spiffe://cluster.local/ns/shop/sa/caller-{i}", "GET", "/");
            Assert.True(buckets.Count <= 100, $"{buckets.Count} buckets after {i + 1} callers");
        }
        // Once idle buckets have refilled they are the first to go, and they cost nothing to forget.
        _time.Advance(TimeSpan.FromMinutes(1));
        limits.TryAcquire(Frontend, "GET", "/");
        Assert.True(buckets.Count <= 100);
    }

    [Fact]
    public void A_changed_limit_keeps_the_callers_remaining_tokens_within_the_new_capacity()
    {
        var buckets = new TokenBuckets(new RateLimitOptions(), _time);
        var before = Compile(buckets, Policy(new TokenBucket(10, RateUnit.Hour, 0)));
        Assert.True(before.TryAcquire(Frontend, "GET", "/").Allowed);
        var after = Compile(buckets, Policy(new TokenBucket(2, RateUnit.Hour, 0)));
        Assert.True(after.TryAcquire(Frontend, "GET", "/").Allowed);
        Assert.True(after.TryAcquire(Frontend, "GET", "/").Allowed);
        Assert.False(after.TryAcquire(Frontend, "GET", "/").Allowed);
    }

    [Fact]
    public void A_policy_for_another_workload_does_not_apply()
    {
        var other = new RateLimitPolicy(new ResourceMetadata("x", "shop"),
            new RateLimitPolicySpec(new WorkloadSelector("payments"), new TokenBucket(1, RateUnit.Hour, 0), [], []));
        var limits = Compile(new TokenBuckets(new RateLimitOptions(), _time), other);
        Assert.Equal(0, limits.PolicyCount);
        Assert.True(limits.TryAcquire(Frontend, "GET", "/").Allowed);
        Assert.True(limits.TryAcquire(Frontend, "GET", "/").Allowed);
    }
}
