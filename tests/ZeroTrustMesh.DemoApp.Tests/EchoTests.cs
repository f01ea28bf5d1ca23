using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using ZeroTrustMesh.DemoApp.Tests.Infrastructure;
using ZeroTrustMesh.Proto.V1;

using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.DemoApp.Tests;

/// <summary>What tests and benchmarks behind the sidecars rely on, checked against the real ztm-demo-app process.</summary>
public sealed class EchoTests(DemoAppFixture fixture) : IClassFixture<DemoAppFixture>, IDisposable
{
    private const string Caller = "spiffe://cluster.local/ns/shop/sa/orders";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly HttpClient _http = new(new SocketsHttpHandler()) { BaseAddress = fixture.App.Http, Timeout = Timeout };

    public void Dispose() => _http.Dispose();

    [Fact]
    public async Task Http1_echo_reports_method_path_query_headers_and_the_caller_identity()
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, "/orders/42?expand=lines") { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        request.Headers.Add("x-ztm-client-identity", Caller);
        request.Headers.Add("x-test", "hello");
        request.Content = new StringContent("twelve bytes");

        using var response = await _http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version11, response.Version);
        var echo = await EchoClient.ReadEcho(response);
        Assert.Equal("test-app", echo.GetProperty("app").GetString());
        Assert.Equal("PUT", echo.GetProperty("method").GetString());
        Assert.Equal("/orders/42", echo.GetProperty("path").GetString());
        Assert.Equal("?expand=lines", echo.GetProperty("query").GetString());
        Assert.Equal("HTTP/1.1", echo.GetProperty("protocol").GetString());
        Assert.Equal("hello", echo.GetProperty("headers").GetProperty("x-test").GetString());
        Assert.Equal(Caller, echo.GetProperty("caller").GetString());
        Assert.Equal(12, echo.GetProperty("bodyBytes").GetInt64());
        Assert.Empty(response.TrailingHeaders);
    }

    [Fact]
    public async Task Without_the_identity_header_the_caller_is_null()
    {
        using var response = await _http.GetAsync("/");

        var echo = await EchoClient.ReadEcho(response);
        Assert.Equal(JsonValueKind.Null, echo.GetProperty("caller").ValueKind);
        Assert.Equal(0, echo.GetProperty("bodyBytes").GetInt64());
    }

    [Fact]
    public async Task H2c_prior_knowledge_on_the_same_port_reports_HTTP2_and_ends_with_the_trailer()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/h2?x=1") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        request.Headers.Add("x-ztm-client-identity", Caller);

        using var response = await _http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version20, response.Version);
        var echo = await EchoClient.ReadEcho(response);
        Assert.Equal("HTTP/2", echo.GetProperty("protocol").GetString());
        Assert.Equal("/h2", echo.GetProperty("path").GetString());
        Assert.Equal(Caller, echo.GetProperty("caller").GetString());
        Assert.Equal(["done"], response.TrailingHeaders.GetValues("x-demo-trailer"));
    }

    [Theory]
    [InlineData("1.1")]
    [InlineData("2.0")]
    public async Task Status_path_replies_with_that_status(string version)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/status/418") { Version = Version.Parse(version), VersionPolicy = HttpVersionPolicy.RequestVersionExact };

        using var response = await _http.SendAsync(request);

        Assert.Equal((HttpStatusCode)418, response.StatusCode);
        Assert.Equal("/status/418", (await EchoClient.ReadEcho(response)).GetProperty("path").GetString());
    }

    [Theory]
    [InlineData("1.1")]
    [InlineData("2.0")]
    public async Task Bytes_path_streams_exactly_n_bytes_of_the_pattern(string version)
    {
        const long length = 10_000_000;
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/bytes/{length}") { Version = Version.Parse(version), VersionPolicy = HttpVersionPolicy.RequestVersionExact };

        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(length, response.Content.Headers.ContentLength);
        await using var body = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[81920];
        long total = 0;
        int read;
        while ((read = await body.ReadAsync(buffer)) > 0)
        {
            for (var i = 0; i < read; i++)
            {
                if (buffer[i] != (byte)((total + i) % 256))
                {
                    Assert.Fail($"byte {total + i} is {buffer[i]}, not {(total + i) % 256}");
                }
            }
            total += read;
        }
        Assert.Equal(length, total);
        if (response.Version == HttpVersion.Version20)
        {
            Assert.Equal(["done"], response.TrailingHeaders.GetValues("x-demo-trailer"));
        }
    }

    [Theory]
    [InlineData("1.1")]
    [InlineData("2.0")]
    public async Task A_streamed_5_MB_request_body_is_counted(string version)
    {
        const long length = 5 * 1024 * 1024;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/upload")
        {
            Version = Version.Parse(version),
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new EchoClient.StreamedContent(length),
        };

        using var response = await _http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(length, (await EchoClient.ReadEcho(response)).GetProperty("bodyBytes").GetInt64());
    }

    [Fact]
    public async Task Slow_path_replies_after_the_delay()
    {
        var started = TimeProvider.System.GetTimestamp();

        using var response = await _http.GetAsync("/slow/200");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(TimeProvider.System.GetElapsedTime(started) >= TimeSpan.FromMilliseconds(190));
    }

    [Fact]
    public async Task WebSocket_echoes_every_message_back()
    {
        using var socket = new ClientWebSocket();
        using var timeout = new CancellationTokenSource(Timeout);
        var ws = new UriBuilder(fixture.App.Http) { Scheme = "ws", Path = "/ws" }.Uri;
        await socket.ConnectAsync(ws, timeout.Token);

        var big = RandomNumberGenerator.GetBytes(100_000);
        foreach (var (message, type) in new[] { (Encoding.UTF8.GetBytes("hello"), WebSocketMessageType.Text), (big, WebSocketMessageType.Binary) })
        {
            await socket.SendAsync(message, type, endOfMessage: true, timeout.Token);
            var (echoed, echoedType) = await EchoClient.ReceiveMessage(socket, timeout.Token);
            Assert.Equal(type, echoedType);
            Assert.Equal(message, echoed);
        }

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", timeout.Token);
        Assert.Equal(WebSocketState.Closed, socket.State);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
    }

    [Fact]
    public async Task Grpc_unary_echoes_the_message_with_the_caller_and_sequence_1()
    {
        using var channel = GrpcChannel.ForAddress(fixture.App.Grpc);
        var client = new Echo.EchoClient(channel);

        using var call = client.UnaryAsync(new EchoRequest { Message = "ping" }, new Metadata { { "x-ztm-client-identity", Caller } }, DateTime.UtcNow.Add(Timeout));
        var reply = await call;

        Assert.Equal("ping", reply.Message);
        Assert.Equal(Caller, reply.Caller);
        Assert.Equal(1UL, reply.Sequence);
        Assert.Equal("test-app", reply.App);
        Assert.Equal("done", call.GetTrailers().GetValue("x-demo-trailer"));
    }

    [Fact]
    public async Task Grpc_chat_replies_to_each_message_in_order_and_ends_with_the_trailer()
    {
        using var channel = GrpcChannel.ForAddress(fixture.App.Grpc);
        var client = new Echo.EchoClient(channel);

        using var call = client.Chat(new Metadata { { "x-ztm-client-identity", Caller } }, DateTime.UtcNow.Add(Timeout));
        var replies = new List<EchoReply>();
        foreach (var message in new[] { "one", "two", "three" })
        {
            // Each reply before the next request: the stream is really bidirectional, not buffered to the end.
            await call.RequestStream.WriteAsync(new EchoRequest { Message = message });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            replies.Add(call.ResponseStream.Current);
        }
        await call.RequestStream.CompleteAsync();
        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None));

        Assert.Equal(["one", "two", "three"], replies.Select(r => r.Message));
        Assert.Equal([1UL, 2UL, 3UL], replies.Select(r => r.Sequence));
        Assert.All(replies, r => Assert.Equal(Caller, r.Caller));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        Assert.Equal("done", call.GetTrailers().GetValue("x-demo-trailer"));
    }

    [Fact]
    public async Task Grpc_is_not_served_on_the_http_port_nor_http_echo_on_the_grpc_port()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(fixture.App.Grpc, "/anything")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };

        using var response = await _http.SendAsync(request);

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    [Fact]
    public async Task Tcp_echoes_everything_and_closes_after_the_client_half_closes()
    {
        using var timeout = new CancellationTokenSource(Timeout);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(fixture.App.Tcp!, timeout.Token);
        var sent = RandomNumberGenerator.GetBytes(1_000_000);

        // Read while writing: the echo comes back as we send, and would fill the socket buffers otherwise.
        var receiving = EchoClient.ReceiveToEnd(socket, timeout.Token);
        await socket.SendAsync(sent, SocketFlags.None, timeout.Token);
        socket.Shutdown(SocketShutdown.Send);
        var received = await receiving;

        Assert.Equal(sent.Length, received.Length);
        Assert.True(sent.AsSpan().SequenceEqual(received), "the echo differs from what was sent");
    }
}
