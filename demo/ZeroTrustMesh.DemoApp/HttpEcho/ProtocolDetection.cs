using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using ZeroTrustMesh.Hosting;

namespace ZeroTrustMesh.DemoApp.HttpEcho;

/// <summary>
/// HTTP/1.1 and h2c (prior knowledge) on one cleartext port. Kestrel cannot do this by itself: without TLS there is
/// no ALPN, and it downgrades an <c>Http1AndHttp2</c> endpoint to HTTP/1.1 (warning "HTTP/2 is not enabled").
/// So:
/// 1. the public port runs <see cref="ProtocolDetector"/>, a connection handler that peeks at the first bytes
///    (consuming nothing, the Kestrel <c>TlsListener</c> <c>AdvanceTo</c> pattern) until they either are the HTTP/2
///    client preface or cannot be;
/// 2. it hands the same connection, unread, to one of two in-process Kestrel listeners bound on
///    <see cref="Http1"/> (HTTP/1.1 only) or <see cref="Http2"/> (HTTP/2 only), which this transport serves;
/// 3. it waits until that listener's HTTP pipeline is done with the connection, and Kestrel then closes the socket.
/// No extra hop: the HTTP pipeline reads the client's socket, and sees its real addresses.
/// </summary>
internal sealed class ProtocolDetection : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    public static readonly EndPoint Http1 = new DetectedEndPoint(HttpProtocols.Http1);
    public static readonly EndPoint Http2 = new DetectedEndPoint(HttpProtocols.Http2);

    private readonly Lock _gate = new();
    private readonly Dictionary<HttpProtocols, Channel<ConnectionContext>> _accepting = [];

    public bool CanBind(EndPoint endpoint) => endpoint is DetectedEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var protocol = ((DetectedEndPoint)endpoint).Protocol;
        var channel = Channel.CreateUnbounded<ConnectionContext>(new UnboundedChannelOptions { SingleReader = true });
        lock (_gate)
        {
            _accepting[protocol] = channel;
        }
        return ValueTask.FromResult<IConnectionListener>(new Listener(endpoint, channel));
    }

    /// <summary>Serves <paramref name="connection"/> with the HTTP pipeline for <paramref name="protocol"/>; completes when it is done.</summary>
    public async Task HandOffAsync(ConnectionContext connection, HttpProtocols protocol)
    {
        Channel<ConnectionContext>? channel;
        lock (_gate)
        {
            _accepting.TryGetValue(protocol, out channel);
        }
        var handedOff = new HandedOffConnection(connection);
        if (channel is not null && channel.Writer.TryWrite(handedOff))
        {
            await handedOff.Done;
        }
    }

    private sealed class DetectedEndPoint(HttpProtocols protocol) : EndPoint
    {
        public HttpProtocols Protocol { get; } = protocol;

        public override string ToString() => $"detected-{Protocol.ToString().ToLowerInvariant()}";
    }

    private sealed class Listener(EndPoint endpoint, Channel<ConnectionContext> channel) : IConnectionListener
    {
        public EndPoint EndPoint { get; } = endpoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                return await channel.Reader.ReadAsync(cancellationToken);
            }
            catch (Exception e) when (e is ChannelClosedException or OperationCanceledException)
            {
                return null;
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            channel.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync() => UnbindAsync();
    }

    /// <summary>
    /// The client's connection as the inner listener sees it. Disposing it only says the inner pipeline is done:
    /// the outer listener owns the socket and closes it once the detector returns.
    /// </summary>
    private sealed class HandedOffConnection(ConnectionContext inner) : ConnectionContext
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Done => _done.Task;

        public override string ConnectionId { get => inner.ConnectionId; set => inner.ConnectionId = value; }

        public override IFeatureCollection Features => inner.Features;

        public override IDictionary<object, object?> Items { get => inner.Items; set => inner.Items = value; }

        public override IDuplexPipe Transport { get => inner.Transport; set => inner.Transport = value; }

        public override EndPoint? LocalEndPoint { get => inner.LocalEndPoint; set => inner.LocalEndPoint = value; }

        public override EndPoint? RemoteEndPoint { get => inner.RemoteEndPoint; set => inner.RemoteEndPoint = value; }

        public override CancellationToken ConnectionClosed { get => inner.ConnectionClosed; set => inner.ConnectionClosed = value; }

        public override void Abort(ConnectionAbortedException abortReason) => inner.Abort(abortReason);

        public override async ValueTask DisposeAsync()
        {
            _done.TrySetResult();
            await base.DisposeAsync();
        }
    }
}

/// <summary>The public HTTP port: peeks for the HTTP/2 preface, then hands the connection to the matching HTTP pipeline.</summary>
internal sealed class ProtocolDetector(ProtocolDetection detection) : ConnectionHandler
{
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromMinutes(2);

    public override async Task OnConnectedAsync(ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        HttpProtocols? protocol = null;
        // A client that connects and says nothing is dropped, as Kestrel's keep-alive timeout would.
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
        idle.CancelAfter(IdleTimeout);
        try
        {
            while (protocol is null)
            {
                var read = await input.ReadAsync(idle.Token);
                var buffer = read.Buffer;
                protocol = Detect(buffer);
                if (protocol is null && (read.IsCompleted || read.IsCanceled))
                {
                    input.AdvanceTo(buffer.End);
                    return;
                }
                // Consume nothing; examine everything only while more bytes are needed, so the HTTP pipeline's
                // first read returns at once with what the client already sent.
                input.AdvanceTo(buffer.Start, protocol is null ? buffer.End : buffer.Start);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ConnectionResetException)
        {
            return;
        }
        await detection.HandOffAsync(connection, protocol.Value);
    }

    /// <summary>HTTP/2 when the bytes are the whole preface, HTTP/1.1 as soon as they cannot be, null while undecided.</summary>
    internal static HttpProtocols? Detect(ReadOnlySequence<byte> buffer) => Http2Preface.Match(buffer) switch
    {
        true => HttpProtocols.Http2,
        false => HttpProtocols.Http1,
        null => null,
    };
}
