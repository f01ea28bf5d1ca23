using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;

namespace ZeroTrustMesh.Sidecar.Tcp;

/// <summary>
/// Relays bytes both ways between a Kestrel connection (its transport pipes) and a stream (the mTLS connection to a
/// peer sidecar, or the app's socket) until both directions end. The stream is read and written directly, not through
/// pipes of its own: a relay is per-connection work on the data path, and a pipe pair around the stream costs a buffer
/// copy and a scheduling hop per read (issue 20's profile of L4 mode). When one side stops sending, the other side's
/// send direction is shut down (half-close) and the reverse direction keeps flowing, as server-first and
/// request/response protocols need. A relay with no bytes in either direction for <c>idleTimeout</c> is closed.
/// </summary>
internal static class TcpRelay
{
    /// <summary>The most bytes written to the stream at once: one TLS record's worth, as the floor relay writes.</summary>
    private const int MaxWrite = 16 * 1024;

    /// <returns>Bytes from the connection to the stream, and from the stream to the connection.</returns>
    public static async Task<(long ToStream, long FromStream)> RunAsync(IDuplexPipe connection, Stream stream, Func<ValueTask> shutdownStreamSend,
        TimeSpan idleTimeout, TimeProvider time, CancellationToken cancellation)
    {
        using var idle = new CancellationTokenSource(idleTimeout, time);
        await using var linked = cancellation.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), idle);
        var toStream = ToStreamAsync(connection.Input, stream, shutdownStreamSend, idleTimeout, idle);
        var fromStream = FromStreamAsync(stream, connection.Output, idleTimeout, idle);
        await Task.WhenAll(toStream, fromStream).ConfigureAwait(false);
        return (toStream.Result, fromStream.Result);
    }

    private static async Task<long> ToStreamAsync(PipeReader from, Stream to, Func<ValueTask> shutdownSend, TimeSpan idleTimeout, CancellationTokenSource idle)
    {
        long total = 0;
        byte[]? gather = null;
        try
        {
            while (true)
            {
                var result = await from.ReadAsync(idle.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                if (!buffer.IsEmpty)
                {
                    // Activity: the idle deadline moves out before the bytes go on, so whoever sees them sees it moved.
                    idle.CancelAfter(idleTimeout);
                    if (buffer.IsSingleSegment)
                    {
                        await to.WriteAsync(buffer.First, idle.Token).ConfigureAwait(false);
                    }
                    else
                    {
                        // Several pipe blocks: gathered into one write (one TLS record, one send) per 16 KiB.
                        gather ??= ArrayPool<byte>.Shared.Rent(MaxWrite);
                        for (var rest = buffer; !rest.IsEmpty;)
                        {
                            var chunk = rest.Slice(0, Math.Min(rest.Length, gather.Length));
                            chunk.CopyTo(gather);
                            await to.WriteAsync(gather.AsMemory(0, (int)chunk.Length), idle.Token).ConfigureAwait(false);
                            rest = rest.Slice(chunk.End);
                        }
                    }
                    total += buffer.Length;
                }
                from.AdvanceTo(buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
            await to.FlushAsync(idle.Token).ConfigureAwait(false);
            await shutdownSend().ConfigureAwait(false);
        }
        catch (Exception e) when (IsEnd(e))
        {
            // Idle timeout, reset or abort: end both directions.
            await idle.CancelAsync().ConfigureAwait(false);
        }
        finally
        {
            await from.CompleteAsync().ConfigureAwait(false);
            if (gather is not null)
            {
                ArrayPool<byte>.Shared.Return(gather);
            }
        }
        return total;
    }

    private static async Task<long> FromStreamAsync(Stream from, PipeWriter to, TimeSpan idleTimeout, CancellationTokenSource idle)
    {
        long total = 0;
        try
        {
            while (true)
            {
                // Read straight into the connection's own buffer: no copy between the stream and the pipe.
                var read = await from.ReadAsync(to.GetMemory(), idle.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }
                idle.CancelAfter(idleTimeout);
                to.Advance(read);
                var flush = await to.FlushAsync(idle.Token).ConfigureAwait(false);
                if (flush.IsCompleted)
                {
                    // The receiving side is gone: nothing can be delivered any more, end both directions.
                    throw new IOException("the receiving side of the relay closed");
                }
                total += read;
            }
            // The stream ended: the connection's send direction ends too (Kestrel sends FIN), the other way keeps flowing.
            await to.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (IsEnd(e))
        {
            await idle.CancelAsync().ConfigureAwait(false);
            await to.CompleteAsync().ConfigureAwait(false);
        }
        return total;
    }

    private static bool IsEnd(Exception e) =>
        e is OperationCanceledException or IOException or SocketException or ObjectDisposedException or InvalidOperationException;

    /// <summary>Reads a one-line preamble (up to <paramref name="maxBytes"/>, ending in '\n') without consuming what follows it.</summary>
    public static async Task<string?> ReadLineAsync(PipeReader reader, int maxBytes, CancellationToken cancellation)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellation).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.PositionOf((byte)'\n') is { } newline)
            {
                var line = System.Text.Encoding.ASCII.GetString(buffer.Slice(0, newline).ToArray());
                reader.AdvanceTo(buffer.GetPosition(1, newline));
                return line.TrimEnd('\r');
            }
            if (buffer.Length > maxBytes || result.IsCompleted)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                return null;
            }
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}
