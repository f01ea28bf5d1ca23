using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.Sidecar.Registry;

namespace ZeroTrustMesh.Sidecar.Tests.Registry;

public sealed class ResolveCacheTests
{
    private static readonly TimeSpan Freshness = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly FakeTimeProvider _time = new();
    private readonly List<(string Key, Exception Error)> _refreshFailures = [];
    private readonly ResolveCache<string, string> _cache;

    public ResolveCacheTests() => _cache = new(Freshness, _time, (key, e) => _refreshFailures.Add((key, e)));

    /// <summary>
    /// A control plane whose answers the test releases one at a time. Its calls complete inline, so when
    /// <see cref="Answer"/> or <see cref="Fail"/> returns the cache has taken the outcome: no polling, no sleeps.
    /// </summary>
    private sealed class Registry
    {
        private readonly Queue<TaskCompletionSource<string>> _calls = new();

        public int Calls { get; private set; }

        public Task<string> Resolve(string key)
        {
            lock (_calls)
            {
                Calls++;
                var call = new TaskCompletionSource<string>();
                _calls.Enqueue(call);
                return call.Task;
            }
        }

        public void Answer(string value) => Next().SetResult(value);

        public void Fail(string why) => Next().SetException(new InvalidOperationException(why));

        private TaskCompletionSource<string> Next()
        {
            lock (_calls)
            {
                return _calls.Dequeue();
            }
        }
    }

    private ValueTask<string> Get(Registry registry, string key = "orders", CancellationToken cancellation = default) =>
        _cache.GetAsync(key, registry, static (r, k) => r.Resolve(k), cancellation);

    [Fact]
    public async Task Concurrent_first_requests_share_one_call_and_a_fresh_answer_needs_none()
    {
        var registry = new Registry();
        var first = Get(registry);
        var second = Get(registry);
        Assert.False(first.IsCompleted);
        Assert.Equal(1, registry.Calls);

        registry.Answer("v1");
        Assert.Equal("v1", await first.AsTask().WaitAsync(Timeout));
        Assert.Equal("v1", await second.AsTask().WaitAsync(Timeout));

        _time.Advance(Freshness - TimeSpan.FromMilliseconds(1));
        Assert.Equal("v1", Served(Get(registry)));
        Assert.Equal(1, registry.Calls);
    }

    [Fact]
    public async Task A_stale_answer_is_served_at_once_while_one_call_refreshes_it()
    {
        var registry = new Registry();
        var first = Get(registry);
        registry.Answer("v1");
        await first.AsTask().WaitAsync(Timeout);

        _time.Advance(Freshness);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("v1", Served(Get(registry)));
        }
        Assert.Equal(2, registry.Calls); // one refresh for the three requests

        registry.Answer("v2");
        Assert.Equal("v2", Served(Get(registry)));
        Assert.Equal(2, registry.Calls);
    }

    [Fact]
    public async Task A_failed_refresh_keeps_the_last_answer_and_is_retried_a_freshness_later()
    {
        var registry = new Registry();
        var first = Get(registry);
        registry.Answer("v1");
        await first.AsTask().WaitAsync(Timeout);

        _time.Advance(Freshness);
        Assert.Equal("v1", Served(Get(registry)));
        registry.Fail("control plane unreachable");
        var failure = Assert.Single(_refreshFailures);
        Assert.Equal("orders", failure.Key);
        Assert.Contains("unreachable", failure.Error.Message, StringComparison.Ordinal);

        // Not asked again on every request while it is down ...
        Assert.Equal("v1", Served(Get(registry)));
        Assert.Equal(2, registry.Calls);
        // ... but once a freshness period has passed.
        _time.Advance(Freshness);
        Assert.Equal("v1", Served(Get(registry)));
        Assert.Equal(3, registry.Calls);
        registry.Answer("v2");
        Assert.Equal("v2", Served(Get(registry)));
    }

    [Fact]
    public async Task With_nothing_known_a_failure_reaches_every_waiter_and_the_next_request_asks_again()
    {
        var registry = new Registry();
        var first = Get(registry);
        var second = Get(registry);
        registry.Fail("control plane unreachable");
        await Assert.ThrowsAsync<InvalidOperationException>(() => first.AsTask().WaitAsync(Timeout));
        await Assert.ThrowsAsync<InvalidOperationException>(() => second.AsTask().WaitAsync(Timeout));
        Assert.Empty(_refreshFailures); // the callers saw it; there was no last answer to fall back on

        var third = Get(registry);
        Assert.Equal(2, registry.Calls);
        registry.Answer("v1");
        Assert.Equal("v1", await third.AsTask().WaitAsync(Timeout));
    }

    [Fact]
    public async Task A_caller_that_gives_up_does_not_cancel_the_call_the_others_wait_for()
    {
        var registry = new Registry();
        using var gaveUp = new CancellationTokenSource();
        var impatient = Get(registry, cancellation: gaveUp.Token);
        var patient = Get(registry);
        gaveUp.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => impatient.AsTask().WaitAsync(Timeout));

        registry.Answer("v1");
        Assert.Equal("v1", await patient.AsTask().WaitAsync(Timeout));
        Assert.Equal(1, registry.Calls);
    }

    [Fact]
    public async Task Keys_are_resolved_separately()
    {
        var registry = new Registry();
        var orders = Get(registry, "orders");
        registry.Answer("orders-endpoints");
        var payments = Get(registry, "payments");
        registry.Answer("payments-endpoints");
        Assert.Equal("orders-endpoints", await orders.AsTask().WaitAsync(Timeout));
        Assert.Equal("payments-endpoints", await payments.AsTask().WaitAsync(Timeout));
    }

    [Fact]
    public void A_call_that_completes_at_once_leaves_the_entry_ready_for_the_next_refresh()
    {
        var calls = 0;
        ValueTask<string> Immediate() => _cache.GetAsync("orders", 0, (_, _) => Task.FromResult($"v{++calls}"), default);

        Assert.Equal("v1", Served(Immediate()));
        _time.Advance(Freshness);
        Assert.Equal("v1", Served(Immediate())); // stale: served, refreshed at once
        Assert.Equal("v2", Served(Immediate()));
        _time.Advance(Freshness);
        Assert.Equal("v2", Served(Immediate()));
        Assert.Equal(3, calls);
    }

    /// <summary>An answer served from memory: a request that had to wait on the control plane fails the test.</summary>
    private static string Served(ValueTask<string> lookup) =>
        lookup.IsCompletedSuccessfully ? lookup.Result : throw new Xunit.Sdk.XunitException("the request waited on the control plane");
}
