using System.IO.Pipelines;
using System.Net.Security;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Http.Features;
using ZeroTrustMesh.Hosting;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>A connection a PERMISSIVE workload accepted without TLS: it has no peer identity, and every request on it says so.</summary>
internal sealed class PlaintextConnectionFeature
{
    public static readonly PlaintextConnectionFeature Instance = new();

    private PlaintextConnectionFeature()
    {
    }
}

/// <summary>
/// Decides what a connection to the inbound port is, before and after Kestrel's HTTPS middleware:
/// 1. its first byte is a TLS handshake record → the mTLS path: the HTTPS middleware verifies the client's SVID, then
///    ALPN picks the opaque TCP relay (<c>ztm-tcp/1</c>) or HTTP/2; a sidecar never negotiates anything else;
/// 2. otherwise, when the workload's current PeerAuthentication accepts plaintext (PERMISSIVE for the workload or for
///    one of its ports) → the same HTTP pipeline with the HTTPS middleware left out: HTTP/1.1, or HTTP/2 when the
///    connection starts with the h2c preface; marked <see cref="PlaintextConnectionFeature"/>, no peer identity;
/// 3. otherwise (STRICT, the default) the connection is closed and counted as a refused handshake, as it always was.
/// A connection must show what it is within <see cref="DetectionTimeout"/> (its first byte; for plaintext, whether it is
/// h2c), as on the outbound port: before, one that sent nothing was held open for ever. After that the TLS handshake
/// has its own 10 s, and every HTTP/2 frame 10 s from its first byte (<see cref="Http2FrameDeadline"/>). Each refusal
/// and failed handshake is counted and logged (<see cref="RefusalLog"/>).
/// The mode is read from the snapshot current when the connection arrives, so a change applies to the next connection;
/// <see cref="InboundProxy"/> checks every plaintext request again against its port's mode in the current snapshot.
/// Kestrel cannot make TLS optional on one endpoint, hence the split: <see cref="AfterTls"/> captures the pipeline
/// behind the HTTPS middleware (built once, when Kestrel binds), and plaintext connections go straight to it.
/// </summary>
internal sealed class InboundConnectionMiddleware(InboundSnapshotState snapshots, InboundTcp tcp, SidecarMetrics metrics, RefusalLog refusals, TimeProvider time)
{
    /// <summary>The first byte of every TLS connection: a handshake record (ClientHello).</summary>
    private const byte TlsHandshakeRecord = 0x16;

    /// <summary>How long a new connection may take to show what it is (as the outbound port, and Kestrel's request headers timeout).</summary>
    public static readonly TimeSpan DetectionTimeout = TimeSpan.FromSeconds(10);

    private ConnectionDelegate? _http;

    /// <summary>Registered before <c>UseHttps</c>: sees the first byte, and how the handshake ended.</summary>
    public Func<ConnectionDelegate, ConnectionDelegate> BeforeTls => next => connection => OnConnectionAsync(connection, next);

    /// <summary>Registered after <c>UseHttps</c>: dispatches by ALPN, and is where plaintext connections join the pipeline.</summary>
    public Func<ConnectionDelegate, ConnectionDelegate> AfterTls => next =>
    {
        _http = next;
        return connection =>
        {
            TlsHandshakeOutcome.MarkCompleted(connection);
            var alpn = connection.Features.Get<ITlsApplicationProtocolFeature>()?.ApplicationProtocol ?? default;
            if (alpn.Span.SequenceEqual(MeshTls.TcpProtocol.Protocol.Span))
            {
                return RelayAsync(connection, next);
            }
            if (alpn.Span.SequenceEqual(SslApplicationProtocol.Http2.Protocol.Span))
            {
                metrics.InboundConnection("mtls");
                return Http2Async(connection, next);
            }
            // HTTP/1.1 on this listener is for plaintext callers only; between sidecars it is HTTP/2 or TCP.
            metrics.Rejected("inbound", "no_alpn");
            return Task.CompletedTask;
        };
    };

    /// <summary>
    /// <c>ztm-tcp/1</c>: relayed as bytes (<see cref="InboundTcp"/>), unless it names an HTTP port that is L7 now: then the
    /// app's own bytes (HTTP/1.1, or h2c when they start with the preface) go through the HTTP pipeline for that port,
    /// with the caller's verified identity, so L7 policy applies to every request on it.
    /// </summary>
    private async Task RelayAsync(ConnectionContext connection, ConnectionDelegate http)
    {
        if (await tcp.HandleAsync(connection) is not { } port)
        {
            return;
        }
        using var detection = new CancellationTokenSource(DetectionTimeout, time);
        if (await IsH2cAsync(connection.Transport.Input, detection.Token) is not { } h2c)
        {
            metrics.Rejected("inbound", "relayed_http_timeout");
            return;
        }
        connection.Features.Set(new RelayedPortFeature(port));
        metrics.InboundConnection("mtls");
        if (h2c)
        {
            // The app's h2c: scheme http on every stream, so the TLS feature must go (see H2cSelection).
            var selection = new H2cSelection(connection.Features);
            connection.Features.Set<ITlsApplicationProtocolFeature>(selection);
            connection.Features.Set<ITlsConnectionFeature>(selection);
            await Http2Async(connection, http);
            return;
        }
        // ALPN ztm-tcp/1 is neither h2 nor http/1.1: Kestrel's protocol selection falls back to HTTP/1.1.
        await http(connection);
    }

    private async Task OnConnectionAsync(ConnectionContext connection, ConnectionDelegate tls)
    {
        connection.Features.Set(ListenerRole.Inbound);
        var input = connection.Transport.Input;
        // Not ConnectionClosed: the client's FIN completes the read anyway, with what it sent.
        using var detection = new CancellationTokenSource(DetectionTimeout, time);
        ReadResult first;
        try
        {
            first = await input.ReadAtLeastAsync(1, detection.Token);
        }
        catch (OperationCanceledException)
        {
            refusals.Refused("inbound", connection.RemoteEndPoint, "NothingSent", $"nothing was sent within {DetectionTimeout.TotalSeconds:0} s of connecting");
            return;
        }
        var isTls = !first.Buffer.IsEmpty && first.Buffer.FirstSpan[0] == TlsHandshakeRecord;
        input.AdvanceTo(first.Buffer.Start);
        if (isTls)
        {
            var (result, error) = await TlsHandshakeOutcome.RunAsync(connection, tls);
            if (result is TlsHandshakeResult.Failed or TlsHandshakeResult.Error)
            {
                refusals.HandshakeFailed("inbound", connection.RemoteEndPoint, result, error);
            }
            return;
        }
        if (first.Buffer.IsEmpty)
        {
            // Connected and closed, as a TCP probe does: counted, not logged.
            metrics.HandshakeFailed("inbound", "ClosedBeforeHandshake");
            return;
        }
        // Kestrel would drop a connection that does not start with a TLS record, and log it only at Debug.
        if (!snapshots.Current.AcceptsPlaintext)
        {
            refusals.Refused("inbound", connection.RemoteEndPoint, "NotTls", "the connection did not start a TLS handshake, and this workload accepts mTLS only (STRICT)");
            return;
        }
        if (await IsH2cAsync(input, detection.Token) is not { } h2c)
        {
            metrics.Rejected("inbound", "plaintext_timeout");
            return;
        }
        connection.Features.Set(PlaintextConnectionFeature.Instance);
        metrics.InboundConnection("plaintext");
        if (h2c)
        {
            var selection = new H2cSelection(connection.Features);
            connection.Features.Set<ITlsApplicationProtocolFeature>(selection);
            connection.Features.Set<ITlsConnectionFeature>(selection);
            await Http2Async(connection, _http!);
            return;
        }
        await _http!(connection);
    }

    /// <summary>HTTP/2 (mTLS or h2c) with every frame due within its deadline.</summary>
    private Task Http2Async(ConnectionContext connection, ConnectionDelegate http) =>
        Http2FrameDeadline.RunAsync(connection, http, Http2FrameDeadline.Default, time,
            expired => refusals.FrameTimedOut("inbound", expired.RemoteEndPoint, Http2FrameDeadline.Default));

    /// <summary>Peeks (consuming nothing) until the bytes are the HTTP/2 preface or cannot be; null when they never come.</summary>
    private static async Task<bool?> IsH2cAsync(PipeReader input, CancellationToken detection)
    {
        while (true)
        {
            ReadResult result;
            try
            {
                result = await input.ReadAsync(detection);
            }
            catch (OperationCanceledException)
            {
                return null;
            }
            var buffer = result.Buffer;
            var decided = Http2Preface.Match(buffer);
            if (decided is not null || result.IsCompleted)
            {
                input.AdvanceTo(buffer.Start);
                return decided ?? false; // a short request that ended: HTTP/1.1 answers what it can
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}
