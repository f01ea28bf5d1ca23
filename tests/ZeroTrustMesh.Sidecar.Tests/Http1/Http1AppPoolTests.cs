using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.Sidecar.Http1;

namespace ZeroTrustMesh.Sidecar.Tests.Http1;

/// <summary><see cref="Http1AppPool"/> against a real listener: what comes back out of the pool, and what is closed instead.</summary>
public sealed class Http1AppPoolTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly TcpListener _app = new(IPAddress.Loopback, 0);
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    public Http1AppPoolTests() => _app.Start();

    private int Port => ((IPEndPoint)_app.LocalEndpoint).Port;

    private Http1AppPool Pool(int maxIdle = 4) => new(IPAddress.Loopback, [Port], _time, Timeout, Http1AppPool.DefaultIdleTimeout, maxIdle);

    [Fact]
    public async Task A_returned_connection_is_rented_again()
    {
        using var pool = Pool();
        var connection = await pool.RentAsync(Port, CancellationToken.None);
        using var accepted = await _app.AcceptTcpClientAsync().WaitAsync(Timeout);
        pool.Return(connection);
        Assert.Equal(1, pool.IdleCount(Port));
        Assert.Same(connection, await pool.RentAsync(Port, CancellationToken.None));
        Assert.Equal(0, pool.IdleCount(Port));
        connection.Dispose();
    }

    [Fact]
    public async Task A_connection_the_app_closed_or_wrote_on_while_idle_is_replaced()
    {
        using var pool = Pool();
        foreach (var closes in new[] { true, false })
        {
            var connection = await pool.RentAsync(Port, CancellationToken.None);
            using var accepted = await _app.AcceptTcpClientAsync().WaitAsync(Timeout);
            pool.Return(connection);
            if (closes)
            {
                accepted.Client.Shutdown(SocketShutdown.Send);
            }
            else
            {
                await accepted.GetStream().WriteAsync("HTTP/1.1 200 OK\r\n\r\n"u8.ToArray());
            }
            await WaitReadable(connection);
            var next = await pool.RentAsync(Port, CancellationToken.None);
            Assert.NotSame(connection, next);
            using var acceptedNext = await _app.AcceptTcpClientAsync().WaitAsync(Timeout);
            next.Dispose();
        }
    }

    [Fact]
    public async Task A_connection_idle_for_the_idle_timeout_is_replaced()
    {
        using var pool = Pool();
        var connection = await pool.RentAsync(Port, CancellationToken.None);
        pool.Return(connection);
        _time.Advance(Http1AppPool.DefaultIdleTimeout - TimeSpan.FromSeconds(1));
        Assert.Same(connection, await pool.RentAsync(Port, CancellationToken.None));
        pool.Return(connection);
        _time.Advance(Http1AppPool.DefaultIdleTimeout);
        var next = await pool.RentAsync(Port, CancellationToken.None);
        Assert.NotSame(connection, next);
        next.Dispose();
    }

    [Fact]
    public async Task No_more_than_the_limit_wait_and_a_disposed_pool_closes_them_and_rents_none()
    {
        var pool = Pool(maxIdle: 2);
        var connections = new List<Http1AppConnection>();
        for (var i = 0; i < 3; i++)
        {
            connections.Add(await pool.RentAsync(Port, CancellationToken.None));
        }
        connections.ForEach(pool.Return);
        Assert.Equal(2, pool.IdleCount(Port));
        pool.Dispose();
        Assert.Equal(0, pool.IdleCount(Port));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await pool.RentAsync(Port, CancellationToken.None));
    }

    [Fact]
    public async Task Connecting_to_a_port_nobody_listens_on_fails_with_the_socket_error()
    {
        _app.Stop();
        using var pool = Pool();
        var refused = await Assert.ThrowsAsync<SocketException>(async () => await pool.RentAsync(Port, CancellationToken.None));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }

    /// <summary>Waits until what the app did reached the pooled connection's socket (no sleep: a bounded poll).</summary>
    private static async Task WaitReadable(Http1AppConnection connection)
    {
        using var cancel = new CancellationTokenSource(Timeout);
        while (connection.IsReusable(Http1AppPool.DefaultIdleTimeout))
        {
            await Task.Yield();
            cancel.Token.ThrowIfCancellationRequested();
        }
    }

    public void Dispose() => _app.Dispose();
}
