using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using ZeroTrustMesh.Sidecar.Tcp;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>
/// An opaque TCP stream inside the mesh's mTLS (ALPN <c>ztm-tcp/1</c>): the calling sidecar names a declared TCP
/// port in a one-line preamble; the bytes are relayed to the app on that port with half-close and an idle timeout.
/// </summary>
internal sealed class InboundTcp(SidecarOptions options, SidecarMetrics metrics, ILogger<InboundTcp> logger)
{
    public const string Preamble = "ztm-tcp/1";

    public async Task HandleAsync(ConnectionContext connection)
    {
        var caller = connection.Features.Get<PeerIdentityFeature>()?.Id.Value ?? "";
        using var preambleTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        string? line;
        try
        {
            line = await TcpRelay.ReadLineAsync(connection.Transport.Input, 64, preambleTimeout.Token);
        }
        catch (OperationCanceledException)
        {
            line = null;
        }
        var parts = line?.Split(' ');
        if (parts is not [Preamble, var portText] || !int.TryParse(portText, out var port) || !options.TcpPorts.Contains(port))
        {
            metrics.Rejected("inbound", "tcp port not declared");
            SidecarLog.ConnectionRefused(logger, "inbound tcp", $"from {caller}: '{line}' does not name a declared TCP port");
            return;
        }

        using var app = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var connectTimeout = new CancellationTokenSource(options.ConnectTimeout);
            await app.ConnectAsync(new IPEndPoint(options.AppAddress, port), connectTimeout.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            SidecarLog.TcpRelayEnded(logger, "inbound", $"app port {port} unreachable: {e.Message}");
            return;
        }

        metrics.TcpOpened("inbound");
        var appStream = new NetworkStream(app, ownsSocket: false);
        var mesh = new RelaySide(connection.Transport.Input, connection.Transport.Output, () => connection.Transport.Output.CompleteAsync());
        var local = new RelaySide(PipeReader.Create(appStream), PipeWriter.Create(appStream), () =>
        {
            app.Shutdown(SocketShutdown.Send);
            return ValueTask.CompletedTask;
        });
        // Not ConnectionClosed: Kestrel fires it when the peer stops sending, and a half-closed relay must keep the other direction flowing.
        var (fromMesh, toMesh) = await TcpRelay.RunAsync(mesh, local, options.TcpIdleTimeout, CancellationToken.None);
        metrics.TcpClosed("inbound", fromMesh, toMesh);
    }
}
