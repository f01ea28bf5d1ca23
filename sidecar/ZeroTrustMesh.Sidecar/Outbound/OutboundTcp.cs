using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using Microsoft.AspNetCore.Connections;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Registry;
using ZeroTrustMesh.Sidecar.Tcp;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Outbound;

/// <summary>
/// An opaque TCP connection from the local app to a service's declared TCP port: mTLS to an endpoint's inbound
/// listener (ALPN <c>ztm-tcp/1</c>, server identity checked), a one-line preamble naming the port, then bytes both ways.
/// The same relay carries an HTTP port in L4 mode; either way the connection is one metric sample and one access-log
/// line when it ends (the destination authorizes it; a denial shows here as a connection closed with no bytes back).
/// </summary>
internal sealed class OutboundTcp(IdentityState state, DestinationClients clients, SidecarOptions options, SidecarMetrics metrics, RefusalLog refusals, AccessLog accessLog,
    TimeProvider time, ILogger<OutboundTcp> logger)
{
    public async Task RelayAsync(ConnectionContext app, IReadOnlyList<Destination> destinations, int port, Func<Task>? onConnected = null)
    {
        var started = time.GetTimestamp();
        var mode = destinations[0].TcpPorts.Contains(port) ? "tcp" : "l4";
        var self = state.Current?.Id.Value ?? "";
        if (clients.Pick(destinations) is not var (destination, _))
        {
            SidecarLog.TcpRelayEnded(logger, "outbound", $"every endpoint of '{destinations[0].Service}' is ejected");
            return;
        }

        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        SslStream tls;
        try
        {
            using var connectTimeout = new CancellationTokenSource(options.ResilienceFor(destination.Service).ConnectTimeout);
            await socket.ConnectAsync(destination.Inbound, connectTimeout.Token);
            tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
            await tls.AuthenticateAsClientAsync(MeshTls.ClientOptions(state, refusals, destination, MeshTls.TcpProtocol), connectTimeout.Token);
            await tls.WriteAsync(Encoding.ASCII.GetBytes($"{InboundTcp.Preamble} {port}\n"), connectTimeout.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or AuthenticationException or IOException)
        {
            SidecarLog.TcpRelayEnded(logger, "outbound", $"cannot reach {destination.Service} at {destination.Inbound}: {e.Message}");
            metrics.L4Connection("outbound", self, destination.Identity.Value, mode, "unreachable");
            accessLog.WriteConnection("outbound", mode, self, destination.Identity.Value, port, "unreachable", time.GetElapsedTime(started), 0, 0, e.Message);
            return;
        }

        await using (tls)
        {
            if (onConnected is not null)
            {
                await onConnected();
            }
            metrics.TcpOpened("outbound");
            metrics.L4Connection("outbound", self, destination.Identity.Value, mode, "opened");
            // Not ConnectionClosed: Kestrel fires it when the app half-closes (FIN), and the reply must still flow back.
            var (sent, received) = await TcpRelay.RunAsync(app.Transport, tls, () => new ValueTask(tls.ShutdownAsync()), options.TcpIdleTimeout, time, CancellationToken.None);
            metrics.TcpClosed("outbound", received, sent);
            accessLog.WriteConnection("outbound", mode, self, destination.Identity.Value, port, "closed", time.GetElapsedTime(started), sent, received, null);
        }
    }
}
