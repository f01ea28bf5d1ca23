using System.Net;
using ZeroTrustMesh.Hosting;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Tls;

/// <summary>
/// Connections refused before any request exists — at the mTLS handshake, before it, or inside an HTTP/2 frame — each
/// counted (<c>ztm_tls_handshake_failures_total</c> or <c>ztm_rejected_requests_total</c>) and logged as one line with
/// the direction, the peer's address and the reason. Anyone who reaches a port can cause these at will, so each kind
/// (direction and reason) logs at most <see cref="LinesPerMinute"/> lines a minute; the next line logged says how many
/// of its kind were left out since the previous one (<c>suppressed=N</c>). The metrics count every one.
/// </summary>
internal sealed class RefusalLog(SidecarMetrics metrics, TimeProvider time, ILogger<RefusalLog> logger)
{
    public const int LinesPerMinute = 10;

    private readonly LogRateLimiter _limiter = new(time, LinesPerMinute, TimeSpan.FromMinutes(1));

    /// <summary>The peer's certificate failed our verification (warning: a peer, or an attacker, holds a certificate we refuse).</summary>
    public void Refused(string direction, EndPoint? peer, SvidVerification verification) =>
        Refused(direction, peer, verification.Failure.ToString(), verification.Reason ?? "");

    /// <summary>A refusal of our own with <paramref name="reason"/> as its metric label: no certificate of ours yet, not TLS, nothing sent in time.</summary>
    public void Refused(string direction, EndPoint? peer, string reason, string detail)
    {
        metrics.HandshakeFailed(direction, reason);
        if (_limiter.TryAcquire($"{direction} {reason}", out var suppressed, out _))
        {
            SidecarLog.HandshakeRefused(logger, direction, Describe(peer), reason, detail, suppressed);
        }
    }

    /// <summary>
    /// The handshake did not complete before any verdict of ours (<paramref name="result"/> Failed: a TLS alert, a version
    /// or ALPN mismatch, a reset, the handshake timeout; Error: an exception from inside the TLS stack, as a malformed
    /// ClientHello causes). Counted, and logged quietly: nothing here is a certificate we refused.
    /// </summary>
    public void HandshakeFailed(string direction, EndPoint? peer, TlsHandshakeResult result, Exception? error)
    {
        var reason = result == TlsHandshakeResult.Error ? "MalformedHandshake" : "TlsError";
        metrics.HandshakeFailed(direction, reason);
        if (_limiter.TryAcquire($"{direction} {reason}", out var suppressed, out _))
        {
            var detail = error is null
                ? "the TLS handshake did not complete (a TLS alert, no common protocol version or ALPN, a reset, or the 10 s handshake timeout)"
                : $"the TLS stack could not process the handshake ({error.GetType().Name}: {error.Message})";
            SidecarLog.HandshakeFailed(logger, direction, Describe(peer), reason, detail, suppressed);
        }
    }

    /// <summary>An HTTP/2 frame (or the preface) began and did not complete in time: the connection is closed.</summary>
    public void FrameTimedOut(string direction, EndPoint? peer, TimeSpan limit)
    {
        metrics.Rejected(direction, "http2 frame not received in time");
        if (_limiter.TryAcquire($"{direction} frame", out var suppressed, out _))
        {
            SidecarLog.HandshakeRefused(logger, direction, Describe(peer), "FrameTimeout",
                $"an HTTP/2 frame did not arrive whole within {limit.TotalSeconds:0} s of its first byte; connection closed", suppressed);
        }
    }

    private static string Describe(EndPoint? peer) => peer?.ToString() ?? "unknown";
}
