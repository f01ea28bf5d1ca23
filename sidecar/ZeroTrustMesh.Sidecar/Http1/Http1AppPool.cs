using System.Collections.Concurrent;
using System.Net;

namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>
/// Idle loopback connections to the app, per declared port, for <see cref="Http1AppHop"/>. A connection comes back only
/// after a fully framed exchange; one the app closed, sent something unasked on, or left idle longer than
/// <paramref name="idleTimeout"/> (SocketsHttpHandler's PooledConnectionIdleTimeout, 1 min) is closed when next
/// found. At most <paramref name="maxIdlePerPort"/> wait per port; more are closed.
/// </summary>
internal sealed class Http1AppPool(IPAddress address, IEnumerable<int> ports, TimeProvider time, TimeSpan connectTimeout, TimeSpan idleTimeout, int maxIdlePerPort = 256) : IDisposable
{
    public static readonly TimeSpan DefaultIdleTimeout = TimeSpan.FromMinutes(1);

    private readonly Dictionary<int, Idle> _idle = ports.Distinct().ToDictionary(p => p, _ => new Idle());
    private volatile bool _disposed;

    public TimeProvider Time => time;

    /// <summary>How many idle connections wait for <paramref name="port"/>.</summary>
    public int IdleCount(int port) => _idle[port].Count;

    /// <summary>An idle connection to <paramref name="port"/> that still looks usable, else a new one.</summary>
    public ValueTask<Http1AppConnection> RentAsync(int port, CancellationToken cancellation)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var idle = _idle[port];
        while (idle.Connections.TryDequeue(out var connection))
        {
            Interlocked.Decrement(ref idle.Count);
            if (connection.IsReusable(idleTimeout))
            {
                return ValueTask.FromResult(connection);
            }
            connection.Dispose();
        }
        return Http1AppConnection.ConnectAsync(address, port, time, connectTimeout, cancellation);
    }

    /// <summary>Takes back a connection whose last exchange was fully framed; closes it when the pool is full or gone.</summary>
    public void Return(Http1AppConnection connection)
    {
        var idle = _idle[connection.Port];
        if (_disposed || Interlocked.Increment(ref idle.Count) > maxIdlePerPort)
        {
            Interlocked.Decrement(ref idle.Count);
            connection.Dispose();
            return;
        }
        connection.IdleSince = time.GetTimestamp();
        idle.Connections.Enqueue(connection);
        if (_disposed)
        {
            Drain(idle);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        foreach (var idle in _idle.Values)
        {
            Drain(idle);
        }
    }

    private static void Drain(Idle idle)
    {
        while (idle.Connections.TryDequeue(out var connection))
        {
            Interlocked.Decrement(ref idle.Count);
            connection.Dispose();
        }
    }

    private sealed class Idle
    {
        public readonly ConcurrentQueue<Http1AppConnection> Connections = new();
        public int Count;
    }
}
