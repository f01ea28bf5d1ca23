using System.Collections.Concurrent;

namespace ZeroTrustMesh.Hosting;

/// <summary>
/// Whether one more line of a kind may be logged: at most <c>perWindow</c> lines per kind in each window, the others
/// counted and reported with the next line that is logged. For events an outsider can cause at will (refused
/// handshakes, garbage on a port): each stays visible, and a flood costs a few lines a minute, not a disk.
/// </summary>
public sealed class LogRateLimiter(TimeProvider time, int perWindow, TimeSpan window)
{
    private readonly ConcurrentDictionary<string, Kind> _kinds = new(StringComparer.Ordinal);

    /// <summary>Counts one event of <paramref name="kind"/>; true when its line should be logged.</summary>
    /// <param name="suppressed">Events of this kind not logged since the last line that was.</param>
    /// <param name="total">Events of this kind since start, this one included.</param>
    public bool TryAcquire(string kind, out long suppressed, out long total)
    {
        var state = _kinds.GetOrAdd(kind, static _ => new Kind());
        var now = time.GetUtcNow();
        lock (state)
        {
            total = ++state.Total;
            if (now - state.WindowStart >= window)
            {
                state.WindowStart = now;
                state.Logged = 0;
            }
            if (state.Logged >= perWindow)
            {
                state.Suppressed++;
                suppressed = 0;
                return false;
            }
            state.Logged++;
            suppressed = state.Suppressed;
            state.Suppressed = 0;
            return true;
        }
    }

    private sealed class Kind
    {
        public DateTimeOffset WindowStart = DateTimeOffset.MinValue;
        public int Logged;
        public long Suppressed;
        public long Total;
    }
}
