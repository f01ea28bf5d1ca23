using System.Buffers;
using System.IO.Pipelines;

namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>
/// Reads one request head from a connection's pipe under the head deadline (Kestrel's RequestHeadersTimeout: a client
/// that trickles its head is cut off, 408). One per connection: its timer is created once and re-armed per head, and
/// on expiry it cancels the pending read, so a request costs no allocation.
/// </summary>
internal sealed class Http1HeadReader : IDisposable
{
    private readonly PipeReader _input;
    private readonly ITimer _deadline;
    private volatile bool _expired;

    public Http1HeadReader(PipeReader input, TimeProvider time)
    {
        _input = input;
        _deadline = time.CreateTimer(static state => ((Http1HeadReader)state!).Expire(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>
    /// Reads until <paramref name="head"/> is whole, refused, left to the YARP path, or the peer closed
    /// (<see cref="Http1HeadRead.Closed"/>). The head's bytes are not consumed: on Complete and Fallback the caller
    /// advances past (or hands on) <see cref="Http1HeadRead.Buffer"/>.
    /// </summary>
    public async ValueTask<Http1HeadRead> ReadAsync(Http1RequestHead head, CancellationToken cancellation)
    {
        _expired = false;
        _deadline.Change(head.Limits.HeadTimeout, Timeout.InfiniteTimeSpan);
        try
        {
            while (true)
            {
                var result = await _input.ReadAsync(cancellation);
                var buffer = result.Buffer;
                if (result.IsCanceled && _expired)
                {
                    _input.AdvanceTo(buffer.Start);
                    return new Http1HeadRead(Http1ParseStatus.Refused, Http1Refusal.HeadTimeout, buffer, Closed: false);
                }
                var status = buffer.IsEmpty ? Http1ParseStatus.NeedMoreData : head.TryParse(buffer);
                if (status != Http1ParseStatus.NeedMoreData)
                {
                    return new Http1HeadRead(status, head.Refusal, buffer, Closed: false);
                }
                if (result.IsCompleted)
                {
                    _input.AdvanceTo(buffer.End);
                    return new Http1HeadRead(Http1ParseStatus.NeedMoreData, Http1Refusal.None, default, Closed: true);
                }
                _input.AdvanceTo(buffer.Start, buffer.End);
            }
        }
        finally
        {
            _deadline.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    public void Dispose() => _deadline.Dispose();

    private void Expire()
    {
        _expired = true;
        _input.CancelPendingRead();
    }
}

/// <summary>What <see cref="Http1HeadReader.ReadAsync"/> got: the parse status, why it refused, and the buffer read so far.</summary>
internal readonly record struct Http1HeadRead(Http1ParseStatus Status, Http1Refusal Refusal, ReadOnlySequence<byte> Buffer, bool Closed);
