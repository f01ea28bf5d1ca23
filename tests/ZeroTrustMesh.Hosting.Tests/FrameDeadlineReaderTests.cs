using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Time.Testing;

namespace ZeroTrustMesh.Hosting.Tests;

/// <summary>The frame deadline on a pipe and a fake clock, consuming like Kestrel's HTTP/2 layer does (all it reads).</summary>
public sealed class FrameDeadlineReaderTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);
    private static readonly byte[] Settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly Pipe _pipe = new();
    private readonly FrameDeadlineReader _reader;
    private int _expired;

    public FrameDeadlineReaderTests() => _reader = new FrameDeadlineReader(_pipe.Reader, Limit, _time, () => _expired++);

    public void Dispose() => _reader.Dispose();

    [Fact]
    public void No_preface_within_the_limit_expires()
    {
        _time.Advance(Limit - TimeSpan.FromMilliseconds(1));
        Assert.Equal(0, _expired);

        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, _expired);
    }

    [Fact]
    public void A_connection_idle_between_frames_never_expires()
    {
        Receive([.. Http2Preface.Bytes, .. Settings]);
        Receive(Headers(streamId: 1, payload: 20));

        _time.Advance(TimeSpan.FromHours(1));

        Assert.Equal(0, _expired);
    }

    [Fact]
    public void A_headers_frame_trickled_a_byte_a_second_expires_10_s_after_its_first_byte()
    {
        Receive([.. Http2Preface.Bytes, .. Settings]);
        _time.Advance(TimeSpan.FromMinutes(5)); // idle first: does not count

        TrickleTenSeconds(Headers(streamId: 1, payload: 40));

        Assert.Equal(1, _expired);
    }

    [Fact]
    public void A_trickled_preface_expires_too()
    {
        TrickleTenSeconds(Http2Preface.Bytes.ToArray());

        Assert.Equal(1, _expired);
    }

    [Fact]
    public void Frames_that_each_complete_in_time_never_expire_however_long_the_stream()
    {
        Receive([.. Http2Preface.Bytes, .. Settings]);
        var data = new byte[9 + 16384];
        data[1] = 0x40; // length 16384
        for (var frame = 0; frame < 20; frame++)
        {
            // Each frame in four pieces over 6 s: 120 s of frames in all.
            for (var piece = 0; piece < 4; piece++)
            {
                Receive(data.AsSpan(piece * data.Length / 4, (piece == 3 ? data.Length - (3 * (data.Length / 4)) : data.Length / 4)));
                _time.Advance(TimeSpan.FromSeconds(2));
            }
        }

        Assert.Equal(0, _expired);
    }

    [Fact]
    public void A_new_frame_begun_in_the_same_read_as_the_last_one_ended_gets_its_own_deadline()
    {
        Receive([.. Http2Preface.Bytes, .. Settings]);
        var first = Headers(streamId: 1, payload: 4);
        Receive(first.AsSpan(0, 5));
        _time.Advance(TimeSpan.FromSeconds(9));

        // The rest of the first frame and the start of a second one.
        Receive([.. first.AsSpan(5), .. Headers(streamId: 3, payload: 4).AsSpan(0, 3)]);
        _time.Advance(TimeSpan.FromSeconds(9));
        Assert.Equal(0, _expired);

        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, _expired);
    }

    [Fact]
    public void Bytes_examined_but_not_consumed_do_not_count_as_received()
    {
        Write([.. Http2Preface.Bytes, .. Settings]);
        Assert.True(_reader.TryRead(out var result));
        _reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);

        _time.Advance(Limit);

        Assert.Equal(1, _expired);
    }

    /// <summary>The first 10 bytes of <paramref name="bytes"/>, one a second.</summary>
    private void TrickleTenSeconds(byte[] bytes)
    {
        for (var i = 0; i < 10; i++)
        {
            Receive(bytes.AsSpan(i, 1));
            _time.Advance(TimeSpan.FromSeconds(1));
        }
    }

    /// <summary>The bytes arrive, and the HTTP/2 layer reads and consumes them.</summary>
    private void Receive(ReadOnlySpan<byte> bytes)
    {
        Write(bytes);
        Assert.True(_reader.TryRead(out var result));
        _reader.AdvanceTo(result.Buffer.End);
    }

    private void Write(ReadOnlySpan<byte> bytes)
    {
        _pipe.Writer.Write(bytes);
        Assert.True(_pipe.Writer.FlushAsync().AsTask().IsCompleted); // far below the pipe's pause threshold
    }

    private static byte[] Headers(int streamId, int payload)
    {
        var frame = new byte[9 + payload];
        frame[2] = (byte)payload;
        frame[3] = 1; // HEADERS
        frame[4] = 4; // END_HEADERS
        frame[8] = (byte)streamId;
        return frame;
    }
}
