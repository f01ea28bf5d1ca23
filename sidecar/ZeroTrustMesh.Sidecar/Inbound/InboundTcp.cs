using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Sidecar.Authorization;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Tcp;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>The app port a connection relayed over <c>ztm-tcp/1</c> named, when it is handed to the HTTP pipeline (the port is L7).</summary>
internal sealed class RelayedPortFeature(int port)
{
    public int Port { get; } = port;
}

/// <summary>
/// A byte stream inside the mesh's mTLS (ALPN <c>ztm-tcp/1</c>): the calling sidecar names an app port in a one-line
/// preamble (<c>ztm-tcp/1 PORT</c>), then:
/// 1. a declared TCP port, or an HTTP port the current config has in L4 mode, is authorized once, for this connection,
///    with the caller's verified identity (<see cref="AuthorizationStage.AuthorizeConnection"/>): denied, the connection
///    is closed before a byte reaches the app; allowed, the bytes are relayed to the app on that port with half-close
///    and an idle timeout, and the connection is recorded once (metrics, one access-log line) when it ends;
/// 2. an HTTP port that is L7 now (a caller relayed it while the port was L4, or before its registry answer refreshed)
///    is not relayed: the caller gets the port's number back and the connection goes through the HTTP pipeline, where
///    every request meets the L7 policy (see <see cref="InboundConnectionMiddleware"/>);
/// 3. anything else is refused.
/// While a relay is open, each new config is checked against it, as ztunnel does: when its port has become L7, or the
/// caller is no longer allowed, the connection is closed (the caller's next connection gets the new treatment).
/// </summary>
internal sealed class InboundTcp(SidecarOptions options, InboundSnapshotState snapshots, SidecarMetrics metrics, AccessLog accessLog, IdentityState identity, TimeProvider time,
    ILogger<InboundTcp> logger)
{
    public const string Preamble = "ztm-tcp/1";

    /// <returns>The app port when the connection should be handled as HTTP instead (an L7 HTTP port); otherwise null (done).</returns>
    public async Task<int?> HandleAsync(ConnectionContext connection)
    {
        var peer = connection.Features.Get<PeerIdentityFeature>()?.Id;
        var caller = peer?.Value ?? "";
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
        if (peer is not { } callerId || parts is not [Preamble, var portText] || !int.TryParse(portText, out var port)
            || !(options.TcpPorts.Contains(port) || options.AppPorts.Contains(port)))
        {
            metrics.Rejected("inbound", "tcp port not declared");
            SidecarLog.ConnectionRefused(logger, "inbound tcp", $"from {caller}: '{line}' does not name a declared TCP or HTTP port");
            return null;
        }
        var snapshot = snapshots.Current;
        var mode = options.TcpPorts.Contains(port) ? "tcp" : "l4";
        if (mode == "l4" && !snapshot.PortModes.IsL4(port))
        {
            return port;
        }

        var self = identity.Current?.Id.Value ?? "";
        var started = time.GetTimestamp();
        var source = (connection.RemoteEndPoint as IPEndPoint)?.Address;
        if (Denial(snapshot, callerId, port, source) is { } denied)
        {
            // Refused at connect: nothing reaches the app. The caller sees the connection close.
            metrics.L4Connection("inbound", caller, self, mode, "denied");
            accessLog.WriteConnection("inbound", mode, caller, self, port, "denied", time.GetElapsedTime(started), 0, 0, $"RBAC: access denied: {denied}");
            return null;
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
            metrics.L4Connection("inbound", caller, self, mode, "app_unreachable");
            accessLog.WriteConnection("inbound", mode, caller, self, port, "app_unreachable", time.GetElapsedTime(started), 0, 0, e.Message);
            return null;
        }

        metrics.TcpOpened("inbound");
        metrics.L4Connection("inbound", caller, self, mode, "allowed");
        await using var appStream = new NetworkStream(app, ownsSocket: false);
        using var closedByPolicy = new CancellationTokenSource();
        // Not ConnectionClosed: Kestrel fires it when the peer stops sending, and a half-closed relay must keep the other direction flowing.
        var relay = TcpRelay.RunAsync(connection.Transport, appStream, () =>
        {
            app.Shutdown(SocketShutdown.Send);
            return ValueTask.CompletedTask;
        }, options.TcpIdleTimeout, time, closedByPolicy.Token);
        var reason = await WatchPolicyAsync(relay, snapshot, mode, callerId, port, source);
        if (reason is not null)
        {
            await closedByPolicy.CancelAsync();
        }
        var (fromMesh, toMesh) = await relay;
        metrics.TcpClosed("inbound", fromMesh, toMesh);
        if (reason is not null)
        {
            metrics.L4Connection("inbound", caller, self, mode, "closed_by_policy");
        }
        accessLog.WriteConnection("inbound", mode, caller, self, port, reason is null ? "closed" : "closed_by_policy", time.GetElapsedTime(started), fromMesh, toMesh, reason);
        return null;
    }

    /// <summary>Until the relay ends: at each new config, whether the connection may stay open; the reason when it may not.</summary>
    private async Task<string?> WatchPolicyAsync(Task relay, InboundSnapshot snapshot, string mode, SpiffeId caller, int port, IPAddress? source)
    {
        while (true)
        {
            if (await Task.WhenAny(relay, snapshot.Superseded) == relay)
            {
                return null;
            }
            snapshot = snapshots.Current;
            if (mode == "l4" && snapshot.PortModes.L7Reason(port) is { } l7)
            {
                return $"port {port} is L7 from config {snapshot.Version}: {l7}";
            }
            if (Denial(snapshot, caller, port, source) is { } denied)
            {
                return $"config {snapshot.Version} denies the connection: {denied}";
            }
        }
    }

    /// <summary>Why the connection is denied at <paramref name="snapshot"/>; null when it is allowed.</summary>
    private string? Denial(InboundSnapshot snapshot, SpiffeId caller, int port, IPAddress? source) =>
        // The authorization stage is always compiled; were it missing, nothing would be allowed.
        snapshot.Pipeline.OfType<AuthorizationStage>().FirstOrDefault() is not { } stage ? "no authorization policy compiled"
        : stage.AuthorizeConnection(caller, port, source, time.GetUtcNow()) is { Allowed: false } decision ? decision.Reason
        : null;
}
