using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.Sidecar.Tcp;

namespace ZeroTrustMesh.Sidecar.Tests.Tcp;

/// <summary>
/// <see cref="TcpRelay"/> between an in-memory connection (the pipes Kestrel would hand over) and a real loopback socket
/// (the stream side, as the app's socket or the mTLS stream is): every byte both ways, half-close in each direction, and
/// the idle timeout.
/// </summary>
public sealed class TcpRelayTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly Pipe _toRelay = new(); // what the connection's peer sends; the relay reads it
    private readonly Pipe _fromRelay = new(); // what the relay writes to the connection
    private Socket _relayEnd = null!; // the stream side the relay owns
    private NetworkStream _stream = null!; // over _relayEnd, and owning it
    private Socket _peer = null!; // the other end of that socket

    public async Task InitializeAsync()
    {
        using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        _peer = new Socket(SocketType.Stream, ProtocolType.Tcp);
        var accepting = listener.AcceptAsync();
        await _peer.ConnectAsync(listener.LocalEndPoint!);
        _relayEnd = await accepting.WaitAsync(Timeout);
        _stream = new NetworkStream(_relayEnd, ownsSocket: true);
    }

    public async Task DisposeAsync()
    {
        await _stream.DisposeAsync();
        _peer.Dispose();
    }

    private Task<(long ToStream, long FromStream)> Relay(TimeSpan idleTimeout) =>
        TcpRelay.RunAsync(new DuplexPipe(_toRelay.Reader, _fromRelay.Writer), _stream, () =>
        {
            _relayEnd.Shutdown(SocketShutdown.Send);
            return ValueTask.CompletedTask;
        }, idleTimeout, _time, CancellationToken.None);

    [Fact]
    public async Task Every_byte_crosses_both_ways_and_each_half_close_ends_only_its_own_direction()
    {
        var relay = Relay(TimeSpan.FromMinutes(1));

        // The connection's side: 1 MB in writes of 3,000 bytes, so the relay reads many pipe segments at once and
        // gathers them; then it stops sending.
        var up = RandomNumberGenerator.GetBytes(1_000_000);
        for (var offset = 0; offset < up.Length; offset += 3_000)
        {
            await _toRelay.Writer.WriteAsync(up.AsMemory(offset, Math.Min(3_000, up.Length - offset)));
        }
        await _toRelay.Writer.CompleteAsync();
        var received = await ReadToEnd(_peer).WaitAsync(Timeout);
        Assert.True(up.AsSpan().SequenceEqual(received), "the socket side did not get the connection's bytes, in order, then the end");

        // The other direction still flows after that half-close, and ends when the socket's side stops sending.
        Assert.False(relay.IsCompleted, "the relay ended when only one direction had");
        var down = RandomNumberGenerator.GetBytes(300_000);
        await _peer.SendAsync(down);
        _peer.Shutdown(SocketShutdown.Send);
        var back = await ReadToEnd(_fromRelay.Reader).WaitAsync(Timeout);
        Assert.True(down.AsSpan().SequenceEqual(back), "the connection did not get the socket side's bytes, in order, then the end");

        var (toStream, fromStream) = await relay.WaitAsync(Timeout);
        Assert.Equal((up.Length, down.Length), ((int)toStream, (int)fromStream));
    }

    [Fact]
    public async Task Ten_thousand_small_exchanges_each_come_back_before_the_next_is_sent()
    {
        // Request/response traffic on a kept-alive connection: every reply must arrive with nothing held back in the
        // relay (a lost wake-up on either side would stall one exchange until the timeout).
        var relay = Relay(TimeSpan.FromMinutes(1));
        var reply = new byte[1_100];
        for (var i = 0; i < 10_000; i++)
        {
            var request = BitConverter.GetBytes(i);
            await _toRelay.Writer.WriteAsync(request);
            var got = new byte[request.Length];
            for (var n = 0; n < got.Length;)
            {
                n += await _peer.ReceiveAsync(got.AsMemory(n)).AsTask().WaitAsync(Timeout);
            }
            Assert.Equal(request, got);
            BitConverter.TryWriteBytes(reply, i);
            await _peer.SendAsync(reply);
            var back = new byte[reply.Length];
            for (var n = 0; n < back.Length;)
            {
                var read = await _fromRelay.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
                Assert.True(n + read.Buffer.Length <= back.Length, "more came back than was sent");
                read.Buffer.CopyTo(back.AsSpan(n));
                n += (int)read.Buffer.Length;
                _fromRelay.Reader.AdvanceTo(read.Buffer.End);
            }
            Assert.Equal(reply, back);
        }
        await _toRelay.Writer.CompleteAsync();
        _peer.Shutdown(SocketShutdown.Send);
        var (toStream, fromStream) = await relay.WaitAsync(Timeout);
        Assert.Equal((40_000L, 11_000_000L), (toStream, fromStream));
    }

    [Fact]
    public async Task A_relay_with_no_bytes_either_way_ends_at_its_idle_timeout_and_traffic_pushes_the_timeout_out()
    {
        var relay = Relay(TimeSpan.FromMilliseconds(500));
        // Two idle timeouts' worth of time pass, with a byte through the relay in each 400 ms: it stays open.
        foreach (var message in new[] { "a"u8.ToArray(), "b"u8.ToArray(), "c"u8.ToArray() })
        {
            _time.Advance(TimeSpan.FromMilliseconds(400));
            await _peer.SendAsync(message);
            var read = await _fromRelay.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal(message, read.Buffer.ToArray());
            _fromRelay.Reader.AdvanceTo(read.Buffer.End);
        }
        Assert.False(relay.IsCompleted, "the relay ended while bytes were flowing");

        // Then silence past the timeout ends both directions: the connection's output completes, the socket's peer sees the end.
        _time.Advance(TimeSpan.FromMilliseconds(1_000));
        await relay.WaitAsync(Timeout);
        var end = await _fromRelay.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.True(end.IsCompleted, "the connection's output was not completed when the relay ended");
    }

    private static async Task<byte[]> ReadToEnd(Socket socket)
    {
        using var all = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int read;
        while ((read = await socket.ReceiveAsync(buffer)) > 0)
        {
            all.Write(buffer, 0, read);
        }
        return all.ToArray();
    }

    private static async Task<byte[]> ReadToEnd(PipeReader reader)
    {
        using var all = new MemoryStream();
        while (true)
        {
            var result = await reader.ReadAsync();
            foreach (var segment in result.Buffer)
            {
                all.Write(segment.Span);
            }
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return all.ToArray();
            }
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
