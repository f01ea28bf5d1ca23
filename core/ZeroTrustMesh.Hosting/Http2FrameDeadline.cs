using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;

namespace ZeroTrustMesh.Hosting;

/// <summary>
/// Bounds how long the HTTP/2 connection preface, and then each HTTP/2 frame, may take to arrive: a client that trickles
/// a HEADERS frame a byte at a time is cut off after <see cref="Default"/>, as Kestrel's request headers timeout cuts
/// off trickled HTTP/1.1 headers.
/// Why Kestrel's own limits do not do it: for HTTP/2, Kestrel starts its request headers timeout only once a whole
/// HEADERS frame without END_HEADERS has arrived. Until a frame is complete no stream exists, and the only limit left
/// is the connection's keep-alive timeout (130 s by default, checked by a 1 s heartbeat: the 131 s measured). Lowering
/// KeepAliveTimeout to 10 s would bound the trickle, but also close every HTTP/2 connection 10 s after its last stream
/// ended (a PING does not reset it): between sidecars, a new mTLS handshake after every quiet spell of 10 s. This
/// bounds only a frame in progress, so a healthy idle connection lives as long as before.
/// How: the connection's input is read through a reader that follows the frame boundaries of what the HTTP/2 layer
/// consumes (a 9-byte header whose first 3 bytes are the payload length, then the payload). One timer per connection
/// is armed while the preface or a frame is incomplete. The deadline runs from a frame's first byte (for the preface:
/// from the start) and is not pushed back by further bytes of the same frame.
/// </summary>
public static class Http2FrameDeadline
{
    public static readonly TimeSpan Default = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Runs <paramref name="next"/>, the HTTP/2 pipeline of <paramref name="connection"/>, under the deadline: when the preface or a
    /// frame is still incomplete <paramref name="limit"/> after it began, <paramref name="onExpired"/> is called and the connection aborted.
    /// </summary>
    public static async Task RunAsync(ConnectionContext connection, ConnectionDelegate next, TimeSpan limit, TimeProvider time, Action<ConnectionContext>? onExpired = null)
    {
        var transport = connection.Transport;
        using var input = new FrameDeadlineReader(transport.Input, limit, time, () =>
        {
            onExpired?.Invoke(connection);
            connection.Abort(new ConnectionAbortedException($"an HTTP/2 frame did not arrive within {limit.TotalSeconds:0} s"));
        });
        connection.Transport = new DuplexPipe(input, transport.Output);
        try
        {
            await next(connection);
        }
        finally
        {
            connection.Transport = transport;
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}

/// <summary>The reader behind <see cref="Http2FrameDeadline"/>: passes everything through, and follows frame boundaries on <see cref="AdvanceTo(SequencePosition, SequencePosition)"/>.</summary>
internal sealed class FrameDeadlineReader : PipeReader, IDisposable
{
    private const int FrameHeaderLength = 9;

    private readonly PipeReader _inner;
    private readonly TimeSpan _limit;
    private readonly TimeProvider _time;
    private readonly Action _expired;
    private readonly ITimer _timer;
    private readonly Lock _gate = new();

    /// <summary>The buffer of the last read, until it is advanced past: what <see cref="AdvanceTo(SequencePosition, SequencePosition)"/> positions point into.</summary>
    private ReadOnlySequence<byte> _buffer;

    // Where the consumed bytes are in the HTTP/2 byte stream; touched only by the reading side.
    private long _payloadLeft;
    private int _headerSeen;
    private int _payloadLength;
    private bool _wasIncomplete = true;

    // The deadline, shared with the timer's callback: under _gate.
    private bool _incomplete;
    private long _startedAt;
    private bool _armed;

    public FrameDeadlineReader(PipeReader inner, TimeSpan limit, TimeProvider time, Action expired)
    {
        _inner = inner;
        _limit = limit;
        _time = time;
        _expired = expired;
        // The client speaks first: the preface is due from the start.
        _payloadLeft = Http2Preface.Bytes.Length;
        _incomplete = true;
        _startedAt = time.GetTimestamp();
        _armed = true;
        _timer = time.CreateTimer(static state => ((FrameDeadlineReader)state!).OnTimer(), this, limit, Timeout.InfiniteTimeSpan);
    }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        var pending = _inner.ReadAsync(cancellationToken);
        if (pending.IsCompletedSuccessfully)
        {
            var result = pending.Result;
            _buffer = result.Buffer;
            return new ValueTask<ReadResult>(result);
        }
        return AwaitReadAsync(pending);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ReadResult> AwaitReadAsync(ValueTask<ReadResult> pending)
    {
        var result = await pending;
        _buffer = result.Buffer;
        return result;
    }

    public override bool TryRead(out ReadResult result)
    {
        if (_inner.TryRead(out result))
        {
            _buffer = result.Buffer;
            return true;
        }
        return false;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        Observe(_buffer.Slice(0, consumed));
        _buffer = default;
        _inner.AdvanceTo(consumed, examined);
    }

    public override void CancelPendingRead() => _inner.CancelPendingRead();

    public override void Complete(Exception? exception = null) => _inner.Complete(exception);

    public override ValueTask CompleteAsync(Exception? exception = null) => _inner.CompleteAsync(exception);

    public void Dispose() => _timer.Dispose();

    /// <summary>Moves through <paramref name="consumed"/>, the bytes the HTTP/2 layer has taken, and (re)starts or stops the deadline.</summary>
    private void Observe(in ReadOnlySequence<byte> consumed)
    {
        if (consumed.IsEmpty)
        {
            return;
        }
        var boundary = false;
        foreach (var segment in consumed)
        {
            var span = segment.Span;
            while (!span.IsEmpty)
            {
                if (_payloadLeft > 0)
                {
                    var skip = (int)Math.Min(_payloadLeft, span.Length);
                    _payloadLeft -= skip;
                    span = span[skip..];
                    boundary |= _payloadLeft == 0;
                    continue;
                }
                var take = Math.Min(FrameHeaderLength - _headerSeen, span.Length);
                for (var i = 0; i < take; i++, _headerSeen++)
                {
                    if (_headerSeen < 3)
                    {
                        _payloadLength = (_payloadLength << 8) | span[i];
                    }
                }
                span = span[take..];
                if (_headerSeen == FrameHeaderLength)
                {
                    _payloadLeft = _payloadLength;
                    _headerSeen = 0;
                    _payloadLength = 0;
                    boundary |= _payloadLeft == 0;
                }
            }
        }
        var incomplete = _payloadLeft > 0 || _headerSeen > 0;
        if (!incomplete && !_wasIncomplete)
        {
            // From a frame boundary to a frame boundary, the usual read: nothing for the timer to know, no lock taken.
            return;
        }
        _wasIncomplete = incomplete;
        lock (_gate)
        {
            if (!incomplete)
            {
                _incomplete = false;
                return;
            }
            if (!_incomplete || boundary)
            {
                // A new frame began: its own deadline.
                _incomplete = true;
                _startedAt = _time.GetTimestamp();
            }
            if (!_armed)
            {
                _armed = true;
                _timer.Change(_limit, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>Expires the connection if the frame in progress began over the limit ago; re-arms for a later one; disarms at a boundary.</summary>
    private void OnTimer()
    {
        lock (_gate)
        {
            if (!_incomplete)
            {
                _armed = false;
                return;
            }
            var elapsed = _time.GetElapsedTime(_startedAt);
            if (elapsed < _limit)
            {
                _timer.Change(_limit - elapsed, Timeout.InfiniteTimeSpan);
                return;
            }
            _armed = false;
        }
        _expired();
    }
}
