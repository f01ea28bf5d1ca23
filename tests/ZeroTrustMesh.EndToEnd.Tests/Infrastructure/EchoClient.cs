using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text.Json;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>
/// Talking to <c>ztm-demo-app</c> the way its tests and the end-to-end tests both do. Linked into the demo app's test
/// project too, so both read echoes, sockets and streamed bodies the same way.
/// </summary>
internal static class EchoClient
{
    /// <summary>The echo JSON; read to the end first, since HTTP/2 trailers arrive after the body.</summary>
    public static async Task<JsonElement> ReadEcho(HttpResponseMessage response)
    {
        var json = await response.Content.ReadAsStringAsync();
        Assert.True(response.Content.Headers.ContentType?.MediaType == "application/json", $"{(int)response.StatusCode}: {json}");
        return JsonDocument.Parse(json).RootElement.Clone();
    }

    /// <summary>One whole WebSocket message.</summary>
    public static async Task<(byte[] Message, WebSocketMessageType Type)> ReceiveMessage(WebSocket socket, CancellationToken cancellation)
    {
        var message = new ArrayBufferWriter<byte>();
        while (true)
        {
            var result = await socket.ReceiveAsync(message.GetMemory(16 * 1024), cancellation);
            message.Advance(result.Count);
            if (result.EndOfMessage)
            {
                return (message.WrittenSpan.ToArray(), result.MessageType);
            }
        }
    }

    /// <summary>Everything the peer sends until it closes its side.</summary>
    public static async Task<byte[]> ReceiveToEnd(Socket socket, CancellationToken cancellation)
    {
        var received = new ArrayBufferWriter<byte>();
        int read;
        while ((read = await socket.ReceiveAsync(received.GetMemory(64 * 1024), SocketFlags.None, cancellation)) > 0)
        {
            received.Advance(read);
        }
        return received.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Sends <paramref name="bytes"/> on a new connection and returns everything until the server closes it (a reset
    /// counts as closing with nothing more); a hang fails after <paramref name="timeout"/>.
    /// </summary>
    public static async Task<byte[]> SendRawAsync(System.Net.IPEndPoint endPoint, byte[] bytes, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint, deadline.Token);
        await socket.SendAsync(bytes, SocketFlags.None, deadline.Token);
        try
        {
            return await ReceiveToEnd(socket, deadline.Token);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return [];
        }
    }

    /// <summary>A request body written in 64 KiB chunks with no Content-Length (chunked on HTTP/1.1).</summary>
    public sealed class StreamedContent(long length) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var chunk = new byte[64 * 1024];
            for (var left = length; left > 0; left -= chunk.Length)
            {
                await stream.WriteAsync(chunk.AsMemory(0, (int)Math.Min(left, chunk.Length)));
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
