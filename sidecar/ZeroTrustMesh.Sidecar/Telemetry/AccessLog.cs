using System.Buffers;
using System.Text.Json;
using System.Threading.Channels;

namespace ZeroTrustMesh.Sidecar.Telemetry;

/// <summary>
/// One JSON line per request on stdout: who called whom, what, the outcome, how long, how many bytes. The request
/// path only formats the line into a pooled buffer and queues it; one background writer batches lines into writes of
/// at most <see cref="MaxWrite"/> bytes (atomic on a pipe, so lines never interleave with other output). If the queue
/// is full the line is dropped and counted (<c>ztm_access_log_dropped_total</c>), rather than slowing requests down. With <c>--access-log off</c> nothing is
/// formatted or written (metrics still count every request).
/// </summary>
internal sealed class AccessLog : IAsyncDisposable
{
    private const int MaxWrite = 4096; // PIPE_BUF: a write up to this size is not split on a pipe
    private const int QueueLength = 16_384;

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    // Wait mode, used only through TryWrite: a full queue refuses the line, so the drop is counted and the rented array
    // returned (DropWrite would report the line as written and neither would happen).
    private readonly Channel<(byte[] Line, int Length)> _queue = Channel.CreateBounded<(byte[], int)>(
        new BoundedChannelOptions(QueueLength) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly Stream _stdout = Console.OpenStandardOutput();
    private readonly bool _enabled;
    private readonly Task _writer;
    private readonly SidecarMetrics _metrics;

    public AccessLog(SidecarOptions options, SidecarMetrics metrics)
    {
        _enabled = options.AccessLog;
        _metrics = metrics;
        _writer = _enabled ? Task.Run(WriteLoopAsync) : Task.CompletedTask;
    }

    public void Write(string direction, string source, string destination, string method, string path, int status, TimeSpan duration, long? bytesIn, long? bytesOut, string? reason = null)
    {
        if (!_enabled)
        {
            return;
        }
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(512);
        buffer.ResetWrittenCount();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("time", DateTimeOffset.UtcNow);
            json.WriteString("log", "access");
            json.WriteString("direction", direction);
            json.WriteString("source", source);
            json.WriteString("destination", destination);
            json.WriteString("method", method);
            json.WriteString("path", path);
            json.WriteNumber("status", status);
            json.WriteNumber("duration_ms", Math.Round(duration.TotalMilliseconds, 3));
            if (bytesIn is { } i)
            {
                json.WriteNumber("bytes_in", i);
            }
            if (bytesOut is { } o)
            {
                json.WriteNumber("bytes_out", o);
            }
            if (reason is not null)
            {
                json.WriteString("reason", reason);
            }
            json.WriteEndObject();
        }
        Enqueue(buffer);
    }

    /// <summary>
    /// One line per connection relayed as bytes (an L4-mode port or a declared TCP port): there are no requests to log.
    /// <c>{"log":"access","mode":"l4","direction","source","destination","port","outcome","duration_ms","bytes_in","bytes_out","reason"?}</c>
    /// </summary>
    public void WriteConnection(string direction, string mode, string source, string destination, int port, string outcome, TimeSpan duration, long bytesIn, long bytesOut, string? reason)
    {
        if (!_enabled)
        {
            return;
        }
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(512);
        buffer.ResetWrittenCount();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("time", DateTimeOffset.UtcNow);
            json.WriteString("log", "access");
            json.WriteString("mode", mode);
            json.WriteString("direction", direction);
            json.WriteString("source", source);
            json.WriteString("destination", destination);
            json.WriteNumber("port", port);
            json.WriteString("outcome", outcome);
            json.WriteNumber("duration_ms", Math.Round(duration.TotalMilliseconds, 3));
            json.WriteNumber("bytes_in", bytesIn);
            json.WriteNumber("bytes_out", bytesOut);
            if (reason is not null)
            {
                json.WriteString("reason", reason);
            }
            json.WriteEndObject();
        }
        Enqueue(buffer);
    }

    private void Enqueue(ArrayBufferWriter<byte> buffer)
    {
        var length = buffer.WrittenCount + 1;
        var line = ArrayPool<byte>.Shared.Rent(length);
        buffer.WrittenSpan.CopyTo(line);
        line[length - 1] = (byte)'\n';
        if (!_queue.Writer.TryWrite((line, length)))
        {
            ArrayPool<byte>.Shared.Return(line);
            _metrics.AccessLogLineDropped();
        }
    }

    private async Task WriteLoopAsync()
    {
        var batch = new byte[MaxWrite];
        var used = 0;
        while (await _queue.Reader.WaitToReadAsync())
        {
            while (_queue.Reader.TryRead(out var item))
            {
                if (used + item.Length > MaxWrite && used > 0)
                {
                    await _stdout.WriteAsync(batch.AsMemory(0, used));
                    used = 0;
                }
                if (item.Length > MaxWrite)
                {
                    await _stdout.WriteAsync(item.Line.AsMemory(0, item.Length)); // a huge line goes alone
                }
                else
                {
                    item.Line.AsSpan(0, item.Length).CopyTo(batch.AsSpan(used));
                    used += item.Length;
                }
                ArrayPool<byte>.Shared.Return(item.Line);
            }
            if (used > 0)
            {
                await _stdout.WriteAsync(batch.AsMemory(0, used));
                await _stdout.FlushAsync();
                used = 0;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer;
        await _stdout.DisposeAsync();
    }
}
