using Microsoft.AspNetCore.Connections;
using ZeroTrustMesh.Hosting;

namespace ZeroTrustMesh.ControlPlane;

/// <summary>
/// What the gRPC listener does around Kestrel's TLS handshake, registered before and after <c>UseHttps</c>:
/// 1. a handshake that throws from inside the TLS stack (a malformed ClientHello) is counted and logged as one quiet,
///    rate-limited line, instead of Kestrel's "fail: Unhandled exception" with a stack trace for every such connection;
/// 2. behind the handshake, each HTTP/2 frame must arrive whole within 10 s of its first byte (<see cref="Http2FrameDeadline"/>:
///    Kestrel alone allows a trickled HEADERS frame its 130 s keep-alive timeout), while idle connections stay open.
/// </summary>
internal sealed class ListenerGuard(TimeProvider time, ILogger<ListenerGuard> logger)
{
    private readonly LogRateLimiter _limiter = new(time, perWindow: 10, TimeSpan.FromMinutes(1));

    public Func<ConnectionDelegate, ConnectionDelegate> BeforeTls => next => async connection =>
    {
        var (result, error) = await TlsHandshakeOutcome.RunAsync(connection, next);
        if (result == TlsHandshakeResult.Error && _limiter.TryAcquire("malformed", out var suppressed, out var total))
        {
            ControlPlaneLog.MalformedHandshake(logger, connection.RemoteEndPoint?.ToString() ?? "unknown", error!.GetType().Name, error.Message, total, suppressed);
        }
    };

    public Func<ConnectionDelegate, ConnectionDelegate> AfterTls => next => connection =>
    {
        TlsHandshakeOutcome.MarkCompleted(connection);
        return Http2FrameDeadline.RunAsync(connection, next, Http2FrameDeadline.Default, time, expired =>
        {
            if (_limiter.TryAcquire("frame", out var suppressed, out var total))
            {
                ControlPlaneLog.FrameTimedOut(logger, expired.RemoteEndPoint?.ToString() ?? "unknown", Http2FrameDeadline.Default.TotalSeconds, total, suppressed);
            }
        });
    };
}
