using Microsoft.AspNetCore.Connections;

namespace ZeroTrustMesh.Hosting;

/// <summary>How the TLS handshake of one connection ended.</summary>
public enum TlsHandshakeResult
{
    /// <summary>Completed: the connection reached the pipeline behind <c>UseHttps</c>.</summary>
    Completed,
    /// <summary>The peer's certificate was refused by the listener's own check (which logged why).</summary>
    Refused,
    /// <summary>
    /// The handshake did not complete before any verdict of ours: a TLS alert or version/ALPN mismatch, a reset, or the
    /// handshake timeout. Kestrel catches these and logs them only at Debug, without the peer's address.
    /// </summary>
    Failed,
    /// <summary>
    /// An exception escaped the handshake: what a malformed ClientHello does (SslStream throws, say, NotSupportedException
    /// from deep inside), which Kestrel would log as an unhandled error with its stack trace.
    /// </summary>
    Error,
}

/// <summary>
/// Tells how a TLS handshake ended, for a listener that wants to count and log it: the connection delegate that runs
/// <c>UseHttps</c> is run through <see cref="RunAsync"/>, the pipeline behind <c>UseHttps</c> calls
/// <see cref="MarkCompleted"/> first, and a certificate check that refuses calls <see cref="MarkRefused"/>.
/// </summary>
public static class TlsHandshakeOutcome
{
    /// <summary>Runs <paramref name="tls"/> (UseHttps and what is behind it) and says how its handshake ended.</summary>
    /// <remarks>An exception after the handshake completed belongs to the connection's protocol, and is rethrown as before.</remarks>
    public static async Task<(TlsHandshakeResult Result, Exception? Error)> RunAsync(ConnectionContext connection, ConnectionDelegate tls)
    {
        try
        {
            await tls(connection);
        }
        catch (Exception e) when (connection.Features.Get<Marker>() != Marker.Completed)
        {
            return (TlsHandshakeResult.Error, e);
        }
        var marker = connection.Features.Get<Marker>();
        return (marker == Marker.Completed ? TlsHandshakeResult.Completed : marker == Marker.Refused ? TlsHandshakeResult.Refused : TlsHandshakeResult.Failed, null);
    }

    /// <summary>The handshake completed; the first thing the pipeline behind <c>UseHttps</c> does.</summary>
    public static void MarkCompleted(ConnectionContext connection) => connection.Features.Set(Marker.Completed);

    /// <summary>The peer's certificate was refused; the certificate check calls it, after logging why.</summary>
    public static void MarkRefused(ConnectionContext connection) => connection.Features.Set(Marker.Refused);

    private sealed class Marker
    {
        public static readonly Marker Completed = new();
        public static readonly Marker Refused = new();
    }
}
