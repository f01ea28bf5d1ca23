using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Http.Features;
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
/// The mode is read from the snapshot current when the connection arrives, so a change applies to the next connection;
/// <see cref="InboundProxy"/> checks every plaintext request again against its port's mode in the current snapshot.
/// Kestrel cannot make TLS optional on one endpoint, hence the split: <see cref="AfterTls"/> captures the pipeline
/// behind the HTTPS middleware (built once, when Kestrel binds), and plaintext connections go straight to it.
/// </summary>
internal sealed class InboundConnectionMiddleware(InboundSnapshotState snapshots, InboundTcp tcp, SidecarMetrics metrics)
{
    /// <summary>The first byte of every TLS connection: a handshake record (ClientHello).</summary>
    private const byte TlsHandshakeRecord = 0x16;

    /// <summary>How long a plaintext connection may take to show whether it is h2c (as Kestrel's request headers timeout).</summary>
    private static readonly TimeSpan DetectionTimeout = TimeSpan.FromSeconds(10);

    private static ReadOnlySpan<byte> Http2Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    private ConnectionDelegate? _http;

    /// <summary>Registered before <c>UseHttps</c>: sees the first byte.</summary>
    public Func<ConnectionDelegate, ConnectionDelegate> BeforeTls => next => connection => OnConnectionAsync(connection, next);

    /// <summary>Registered after <c>UseHttps</c>: dispatches by ALPN, and is where plaintext connections join the pipeline.</summary>
    public Func<ConnectionDelegate, ConnectionDelegate> AfterTls => next =>
    {
        _http = next;
        return connection =>
        {
            var alpn = connection.Features.Get<ITlsApplicationProtocolFeature>()?.ApplicationProtocol ?? default;
            if (alpn.Span.SequenceEqual(MeshTls.TcpProtocol.Protocol.Span))
            {
                return tcp.HandleAsync(connection);
            }
            if (alpn.Span.SequenceEqual(SslApplicationProtocol.Http2.Protocol.Span))
            {
                metrics.InboundConnection("mtls");
                return next(connection);
            }
            // HTTP/1.1 on this listener is for plaintext callers only; between sidecars it is HTTP/2 or TCP.
            metrics.Rejected("inbound", "no_alpn");
            return Task.CompletedTask;
        };
    };

    private async Task OnConnectionAsync(ConnectionContext connection, ConnectionDelegate tls)
    {
        connection.Features.Set(ListenerRole.Inbound);
        var input = connection.Transport.Input;
        var first = await input.ReadAtLeastAsync(1, connection.ConnectionClosed);
        var isTls = !first.Buffer.IsEmpty && first.Buffer.FirstSpan[0] == TlsHandshakeRecord;
        input.AdvanceTo(first.Buffer.Start);
        if (isTls)
        {
            await tls(connection);
            return;
        }
        // Kestrel would drop a connection that does not start with a TLS record, and log it only at Debug: count it here.
        if (first.Buffer.IsEmpty || !snapshots.Current.AcceptsPlaintext)
        {
            metrics.HandshakeFailed("inbound", first.Buffer.IsEmpty ? "ClosedBeforeHandshake" : "NotTls");
            return;
        }
        if (await IsH2cAsync(input) is not { } h2c)
        {
            metrics.Rejected("inbound", "plaintext_timeout");
            return;
        }
        if (h2c)
        {
            var selection = new H2cSelection(connection.Features);
            connection.Features.Set<ITlsApplicationProtocolFeature>(selection);
            connection.Features.Set<ITlsConnectionFeature>(selection);
        }
        connection.Features.Set(PlaintextConnectionFeature.Instance);
        metrics.InboundConnection("plaintext");
        await _http!(connection);
    }

    /// <summary>Peeks (consuming nothing) until the bytes are the HTTP/2 preface or cannot be; null when they never come.</summary>
    private static async Task<bool?> IsH2cAsync(PipeReader input)
    {
        using var timeout = new CancellationTokenSource(DetectionTimeout);
        while (true)
        {
            ReadResult result;
            try
            {
                result = await input.ReadAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                return null;
            }
            var buffer = result.Buffer;
            var decided = Detect(buffer);
            if (decided is not null || result.IsCompleted)
            {
                input.AdvanceTo(buffer.Start);
                return decided ?? false; // a short request that ended: HTTP/1.1 answers what it can
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static bool? Detect(ReadOnlySequence<byte> buffer)
    {
        Span<byte> head = stackalloc byte[Http2Preface.Length];
        var length = (int)Math.Min(buffer.Length, Http2Preface.Length);
        buffer.Slice(0, length).CopyTo(head);
        if (!head[..length].SequenceEqual(Http2Preface[..length]))
        {
            return false;
        }
        return length == Http2Preface.Length ? true : null;
    }
}
