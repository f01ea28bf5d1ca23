using System.Collections.Concurrent;

namespace ZeroTrustMesh.Sidecar.Registry;

/// <summary>
/// Registry answers held in memory, so that a request waits on the control plane only for a destination this sidecar
/// has never resolved:
/// 1. a fresh answer is served as it is;
/// 2. a stale one is served at once, while one background call (never one per request) refreshes it; if that call
///    fails, the last answer stays in use and is asked for again a <c>freshness</c> later: a control plane that is down
///    or cut off costs staleness, not latency;
/// 3. a missing one is fetched by one call that every concurrent caller awaits; its failure reaches them all, and the
///    next caller tries again.
/// The call has no caller's cancellation (several callers share it); it must bound itself (a deadline).
/// </summary>
internal sealed class ResolveCache<TKey, TValue>(TimeSpan freshness, TimeProvider time, Action<TKey, Exception> refreshFailed)
    where TKey : notnull
    where TValue : class
{
    private readonly ConcurrentDictionary<TKey, Entry> _entries = new();

    public ValueTask<TValue> GetAsync<TState>(TKey key, TState state, Func<TState, TKey, Task<TValue>> resolve, CancellationToken cancellation)
    {
        var entry = _entries.GetOrAdd(key, static _ => new Entry());
        lock (entry)
        {
            var value = entry.Value;
            var pending = entry.Pending;
            if (pending is null && (value is null || time.GetElapsedTime(entry.At) >= freshness))
            {
                // Published before the call starts: a call that completes at once clears it again (the lock is re-entrant).
                var call = new TaskCompletionSource<TValue>(TaskCreationOptions.RunContinuationsAsynchronously);
                entry.Pending = pending = call.Task;
                _ = RefreshAsync(key, entry, call, state, resolve);
            }
            return value is not null ? new ValueTask<TValue>(value) : new ValueTask<TValue>(pending!.WaitAsync(cancellation));
        }
    }

    private async Task RefreshAsync<TState>(TKey key, Entry entry, TaskCompletionSource<TValue> pending, TState state, Func<TState, TKey, Task<TValue>> resolve)
    {
        TValue value;
        try
        {
            value = await resolve(state, key);
        }
        catch (Exception e)
        {
            bool hadValue;
            lock (entry)
            {
                hadValue = entry.Value is not null;
                entry.At = time.GetTimestamp(); // with a value: ask again a freshness later, not on the next request
                entry.Pending = null;
            }
            if (hadValue)
            {
                refreshFailed(key, e);
            }
            pending.SetException(e);
            _ = pending.Task.Exception; // observed: with a value to serve, nobody awaits this call
            return;
        }
        lock (entry)
        {
            (entry.Value, entry.At, entry.Pending) = (value, time.GetTimestamp(), null);
        }
        pending.SetResult(value);
    }

    private sealed class Entry
    {
        public TValue? Value;

        /// <summary>When <see cref="Value"/> was fetched, or a refresh of it last failed (a <see cref="TimeProvider"/> timestamp).</summary>
        public long At;

        public Task<TValue>? Pending;
    }
}
