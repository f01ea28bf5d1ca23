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
        // The request path: a fresh answer is read without a lock.
        var answer = entry.Answer;
        if (answer is not null && time.GetElapsedTime(answer.At) < freshness)
        {
            return new ValueTask<TValue>(answer.Value);
        }
        lock (entry)
        {
            answer = entry.Answer;
            var pending = entry.Pending;
            if (pending is null && (answer is null || time.GetElapsedTime(answer.At) >= freshness))
            {
                // Published before the call starts: a call that completes at once clears it again (the lock is re-entrant).
                var call = new TaskCompletionSource<TValue>(TaskCreationOptions.RunContinuationsAsynchronously);
                entry.Pending = pending = call.Task;
                _ = RefreshAsync(key, entry, call, state, resolve);
            }
            return answer is not null ? new ValueTask<TValue>(answer.Value) : new ValueTask<TValue>(pending!.WaitAsync(cancellation));
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
            Answer? kept;
            lock (entry)
            {
                // With an answer to serve: ask again a freshness later, not on the next request.
                kept = entry.Answer;
                if (kept is not null)
                {
                    entry.Answer = kept with { At = time.GetTimestamp() };
                }
                entry.Pending = null;
            }
            if (kept is not null)
            {
                refreshFailed(key, e);
            }
            pending.SetException(e);
            _ = pending.Task.Exception; // observed: with an answer to serve, nobody awaits this call
            return;
        }
        lock (entry)
        {
            entry.Answer = new Answer(value, time.GetTimestamp());
            entry.Pending = null;
        }
        pending.SetResult(value);
    }

    /// <summary>An answer and when it was fetched, or when a refresh of it last failed (a <see cref="TimeProvider"/> timestamp).</summary>
    private sealed record Answer(TValue Value, long At);

    private sealed class Entry
    {
        /// <summary>Replaced whole, never changed in place: read without the lock.</summary>
        public volatile Answer? Answer;

        /// <summary>The call in flight, if any; under the lock.</summary>
        public Task<TValue>? Pending;
    }
}
