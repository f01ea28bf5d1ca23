using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Http.Features;
using ZeroTrustMesh.Hosting;
using ZeroTrustMesh.Sidecar.Registry;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Outbound;

/// <summary>
/// Decides what a connection from the local app is, before HTTP parsing:
/// 1. redirected by iptables to a service's declared TCP port, or to an HTTP port the control plane has in L4 mode (or a
///    Kubernetes Service port that maps to one) → relayed as bytes (<see cref="OutboundTcp"/>), no HTTP parsing;
/// 2. <c>CONNECT host:port</c> (the sidecar as HTTP proxy) → the same relay to that service's declared TCP port or L4 port;
/// 3. the HTTP/2 connection preface (h2c prior knowledge, as gRPC clients send) → Kestrel's HTTP/2;
/// 4. anything else → Kestrel's HTTP/1.1.
/// Kestrel cannot tell HTTP/1.1 from h2c on one cleartext port by itself (dotnet/aspnetcore#56984): it picks HTTP/2
/// only when a TLS application-protocol feature says "h2", so step 3 sets that feature after seeing the preface.
/// </summary>
internal sealed class OutboundConnectionMiddleware(OutboundTcp tcp, MeshRegistryClient registry, SidecarMetrics metrics, ILogger<OutboundConnectionMiddleware> logger)
{
    private static ReadOnlySpan<byte> ConnectMethod => "CONNECT "u8;
    private const int MaxConnectHead = 8 * 1024;

    /// <summary>How long a new connection may take to show what it is (the same as Kestrel's request headers timeout).</summary>
    public static readonly TimeSpan DetectionTimeout = TimeSpan.FromSeconds(10);

    public async Task OnConnectionAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var original = OriginalDestination.Of(connection.Features.Get<IConnectionSocketFeature>()?.Socket);
        if (original is not null)
        {
            connection.Features.Set(new OriginalDestinationFeature(original));
            IReadOnlyList<Destination> destinations;
            try
            {
                destinations = await registry.ResolveAddressAsync(original, connection.ConnectionClosed);
            }
            catch (RegistryUnavailableException e)
            {
                // Nothing known of this address, and no one to ask: whatever the protocol, there is nowhere to send it.
                metrics.Rejected("outbound", "registry unavailable");
                SidecarLog.ConnectionRefused(logger, "outbound", $"{original}: {e.Message}");
                return;
            }
            if (destinations.Count > 0 && destinations[0].RelayPortFor(original.Port) is { } tcpPort)
            {
                await tcp.RelayAsync(connection, destinations, tcpPort);
                return;
            }
        }

        var input = connection.Transport.Input;
        // Kestrel's header timeout starts only once we hand the connection over: until then this is the limit, or a
        // client that sends nothing, or stops inside "PRI * HTTP/2.0..." or "CONNEC", would hold the connection forever.
        // (Not ConnectionClosed: it fires on the client's FIN, while a complete request may still wait in the pipe.)
        using var detection = new CancellationTokenSource(DetectionTimeout);
        while (true)
        {
            ReadResult result;
            try
            {
                result = await input.ReadAsync(detection.Token);
            }
            catch (OperationCanceledException)
            {
                metrics.Rejected("outbound", "request not received in time");
                SidecarLog.ConnectionRefused(logger, "outbound", $"no complete request start within {DetectionTimeout.TotalSeconds:0} s");
                return;
            }
            var buffer = result.Buffer;
            var connect = BytePrefix.Match(buffer, ConnectMethod);
            var h2c = Http2Preface.Match(buffer);
            if (connect == true)
            {
                input.AdvanceTo(buffer.Start);
                if (await ReadConnectHeadAsync(input) is { } target)
                {
                    await ConnectAsync(connection, target);
                }
                return;
            }
            if (h2c == true)
            {
                input.AdvanceTo(buffer.Start);
                var selection = new H2cSelection(connection.Features);
                connection.Features.Set<ITlsApplicationProtocolFeature>(selection);
                connection.Features.Set<ITlsConnectionFeature>(selection);
                break;
            }
            // Still a possible prefix of either: wait for more bytes. Otherwise it is HTTP/1.1.
            var undecided = h2c is null || connect is null;
            if (!undecided || result.IsCompleted)
            {
                input.AdvanceTo(buffer.Start);
                break;
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
        await next(connection);
    }

    /// <summary>Answers a CONNECT: 200 and a relay for a service's declared TCP port, else an HTTP error and close.</summary>
    private async Task ConnectAsync(ConnectionContext connection, string authority)
    {
        var output = connection.Transport.Output;
        var colon = authority.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(authority.AsSpan(colon + 1), out var port))
        {
            await RespondAsync(output, "400 Bad Request", $"CONNECT needs host:port, got '{authority}'");
            return;
        }
        var service = authority[..colon];
        IReadOnlyList<Destination> destinations;
        try
        {
            destinations = await registry.ResolveServiceAsync(service, connection.ConnectionClosed);
        }
        catch (RegistryUnavailableException e)
        {
            metrics.Rejected("outbound", "registry unavailable");
            await RespondAsync(output, "503 Service Unavailable", e.Message);
            return;
        }
        if (destinations.Count == 0)
        {
            metrics.Rejected("outbound", "unknown service");
            await RespondAsync(output, "503 Service Unavailable", $"no endpoints for service '{service}'");
            return;
        }
        if (destinations[0].RelayPortFor(port) is not { } target)
        {
            metrics.Rejected("outbound", "tcp port not declared");
            await RespondAsync(output, "403 Forbidden", $"port {port} is neither a declared TCP port of '{destinations[0].Service}' nor one in L4 mode");
            return;
        }
        await tcp.RelayAsync(connection, destinations, target, onConnected: () => RespondAsync(output, "200 Connection Established", null));
    }

    private static async Task RespondAsync(PipeWriter output, string status, string? reason)
    {
        var body = reason is null ? "" : reason + "\n";
        var head = $"HTTP/1.1 {status}\r\n" + (reason is null ? "\r\n" : $"Content-Type: text/plain\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}");
        await output.WriteAsync(Encoding.UTF8.GetBytes(head));
    }

    /// <summary>Consumes a CONNECT request head and returns its authority, or null when it is malformed, too large or too slow.</summary>
    private async Task<string?> ReadConnectHeadAsync(PipeReader input)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(timeout.Token);
                var buffer = result.Buffer;
                var end = IndexOf(buffer, "\r\n\r\n"u8);
                if (end >= 0)
                {
                    var head = Encoding.ASCII.GetString(buffer.Slice(0, end).ToArray());
                    input.AdvanceTo(buffer.GetPosition(end + 4));
                    var requestLine = head.Split("\r\n")[0].Split(' ');
                    return requestLine is ["CONNECT", var authority, var version] && version.StartsWith("HTTP/1.", StringComparison.Ordinal) ? authority : null;
                }
                if (buffer.Length > MaxConnectHead || result.IsCompleted)
                {
                    SidecarLog.ConnectionRefused(logger, "outbound", "CONNECT request head malformed or over 8 KiB");
                    return null;
                }
                input.AdvanceTo(buffer.Start, buffer.End);
            }
        }
        catch (OperationCanceledException)
        {
            SidecarLog.ConnectionRefused(logger, "outbound", "CONNECT request head not received within 10 s");
            return null;
        }
    }

    private static long IndexOf(ReadOnlySequence<byte> buffer, ReadOnlySpan<byte> value)
    {
        var reader = new SequenceReader<byte>(buffer);
        return reader.TryReadTo(out ReadOnlySequence<byte> before, value, advancePastDelimiter: false) ? before.Length : -1;
    }
}
