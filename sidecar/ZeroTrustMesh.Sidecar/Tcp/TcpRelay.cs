using System.Buffers;
using System.IO.Pipelines;

namespace ZeroTrustMesh.Sidecar.Tcp;

/// <summary>One side of a relay: where bytes come from, where they go, and how to signal "no more bytes" (half-close).</summary>
internal sealed record RelaySide(PipeReader Input, PipeWriter Output, Func<ValueTask> ShutdownSend);

/// <summary>
/// Relays bytes both ways between two connections with System.IO.Pipelines until both directions end.
/// When one side stops sending, the other side's send direction is shut down (half-close) and the
/// reverse direction keeps flowing, as server-first and request/response protocols need. A relay with
/// no bytes in either direction for <c>idleTimeout</c> is closed.
/// </summary>
internal static class TcpRelay
{
    public static async Task<(long AToB, long BToA)> RunAsync(RelaySide a, RelaySide b, TimeSpan idleTimeout, CancellationToken cancellation)
    {
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        idle.CancelAfter(idleTimeout);
        var aToB = PumpAsync(a.Input, b, idleTimeout, idle);
        var bToA = PumpAsync(b.Input, a, idleTimeout, idle);
        await Task.WhenAll(aToB, bToA).ConfigureAwait(false);
        return (aToB.Result, bToA.Result);
    }

    private static async Task<long> PumpAsync(PipeReader from, RelaySide to, TimeSpan idleTimeout, CancellationTokenSource idle)
    {
        long total = 0;
        try
        {
            while (true)
            {
                var result = await from.ReadAsync(idle.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                if (!buffer.IsEmpty)
                {
                    foreach (var segment in buffer)
                    {
                        var flush = await to.Output.WriteAsync(segment, idle.Token).ConfigureAwait(false);
                        if (flush.IsCompleted)
                        {
                            // The receiving side is gone: nothing can be delivered any more, end both directions.
                            throw new IOException("the receiving side of the relay closed");
                        }
                    }
                    total += buffer.Length;
                    idle.CancelAfter(idleTimeout); // activity: push the idle deadline out
                }
                from.AdvanceTo(buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
            await to.Output.FlushAsync(idle.Token).ConfigureAwait(false);
            await to.ShutdownSend().ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // Idle timeout, reset or abort: end both directions.
            await idle.CancelAsync().ConfigureAwait(false);
        }
        finally
        {
            await from.CompleteAsync().ConfigureAwait(false);
        }
        return total;
    }

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
