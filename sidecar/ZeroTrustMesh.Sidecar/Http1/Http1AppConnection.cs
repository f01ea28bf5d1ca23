using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>
/// One loopback connection to the app for <see cref="Http1AppHop"/>: a socket with a pipe each way and the per-connection
/// state a request reuses (the response head's field table, the buffer for decoded chunks, the activity deadline), so a
/// request on a pooled connection allocates nothing of its own here.
/// </summary>
internal sealed class Http1AppConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private CancellationTokenSource _activity;
    private readonly TimeProvider _time;

    private Http1AppConnection(Socket socket, int port, TimeProvider time)
    {
        _socket = socket;
        _time = time;
        Port = port;
        _stream = new NetworkStream(socket, ownsSocket: true);
        Input = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: 16 * 1024, minimumReadSize: 4 * 1024, leaveOpen: true));
        Output = PipeWriter.Create(_stream, new StreamPipeWriterOptions(minimumBufferSize: 4 * 1024, leaveOpen: true));
        _activity = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
    }

    public int Port { get; }

    public PipeReader Input { get; }

    public PipeWriter Output { get; }

    public Http1ResponseHead Head { get; } = new();

    /// <summary>Where chunked response data is decoded to before it goes to the caller.</summary>
    public ArrayBufferWriter<byte> Decoded { get; } = new(16 * 1024);

    /// <summary>Cancelled when the exchange saw no progress for the activity timeout, or the caller went away.</summary>
    public CancellationToken Activity => _activity.Token;

    /// <summary>How many exchanges completed on this connection (0: a new connection).</summary>
    public int Exchanges { get; private set; }

    /// <summary>When the connection went back to the pool (a <see cref="TimeProvider"/> timestamp).</summary>
    public long IdleSince { get; set; }

    /// <summary>Connects to the app at <paramref name="address"/>:<paramref name="port"/> within <paramref name="connectTimeout"/>.</summary>
    public static async ValueTask<Http1AppConnection> ConnectAsync(IPAddress address, int port, TimeProvider time, TimeSpan connectTimeout, CancellationToken cancellation)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var timeout = new CancellationTokenSource(connectTimeout, time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellation);
            try
            {
                await socket.ConnectAsync(new IPEndPoint(address, port), linked.Token);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellation.IsCancellationRequested)
            {
                throw new TimeoutException($"connecting to the app at {address}:{port} took longer than {connectTimeout.TotalSeconds:0.###} s");
            }
            return new Http1AppConnection(socket, port, time);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Starts (or restarts) the activity deadline: progress on the exchange calls this again.</summary>
    public void Touch(TimeSpan timeout) => _activity.CancelAfter(timeout);

    /// <summary>Cancels what the exchange is waiting on (the caller went away).</summary>
    public void Cancel() => _activity.Cancel();

    /// <summary>
    /// Marks one exchange complete and makes the connection ready for the next; false when it cannot be reused
    /// (its deadline fired in the meantime).
    /// </summary>
    public bool Complete()
    {
        Exchanges++;
        _activity.CancelAfter(Timeout.InfiniteTimeSpan);
        if (!_activity.TryReset())
        {
            return false;
        }
        Decoded.ResetWrittenCount();
        return true;
    }

    /// <summary>
    /// Whether an idle connection still looks usable: the app has not closed it nor sent anything unasked (either makes
    /// the socket readable), and it was idle for less than <paramref name="idleTimeout"/>.
    /// </summary>
    public bool IsReusable(TimeSpan idleTimeout)
    {
        if (_time.GetElapsedTime(IdleSince) >= idleTimeout)
        {
            return false;
        }
        try
        {
            return !_socket.Poll(0, SelectMode.SelectRead);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        Input.Complete();
        Output.Complete();
        _stream.Dispose();
        _activity.Dispose();
        Head.Dispose();
    }
}
