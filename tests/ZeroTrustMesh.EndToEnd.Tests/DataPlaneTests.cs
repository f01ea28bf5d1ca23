using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// The frontend application calls orders through its own sidecar, and the orders app sees the caller's verified identity:
/// every protocol the data plane carries, through two real sidecars, a real control plane and the real demo app.
/// </summary>
[Collection(DataPlaneCollection.Name)]
public class DataPlaneTests
{
    private const string Frontend = DataPlaneFixture.FrontendId;
    private const string Orders = DataPlaneFixture.OrdersId;

    private readonly DataPlaneFixture _mesh;

    public DataPlaneTests(DataPlaneFixture fixture, ITestOutputHelper output)
    {
        fixture.AttachOutput(output);
        _mesh = fixture;
    }

    private string OrdersHttp => $"http://orders:{_mesh.Orders.HttpPort}";

    // ---- HTTP/1.1 ----

    [Fact]
    public async Task Http1_through_the_sidecar_as_http_proxy_reaches_orders_with_the_callers_identity()
    {
        using var http = new HttpClient(Mesh.Proxied(_mesh.Frontend)) { Timeout = Mesh.Timeout };
        using var request = new HttpRequestMessage(HttpMethod.Put, $"{OrdersHttp}/orders/42?expand=lines") { Content = new StringContent("twelve bytes") };
        request.Headers.Add("x-test", "hello");

        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var echo = await EchoClient.ReadEcho(response);
        Assert.Equal("orders", echo.GetProperty("app").GetString());
        Assert.Equal("PUT", echo.GetProperty("method").GetString());
        Assert.Equal("/orders/42", echo.GetProperty("path").GetString());
        Assert.Equal("?expand=lines", echo.GetProperty("query").GetString());
        Assert.Equal("HTTP/1.1", echo.GetProperty("protocol").GetString());
        Assert.Equal("hello", echo.GetProperty("headers").GetProperty("x-test").GetString());
        Assert.Equal(12, echo.GetProperty("bodyBytes").GetInt64());
        Assert.Equal(Frontend, echo.GetProperty("caller").GetString());
        // Mesh-internal headers do not reach the app.
        Assert.False(echo.GetProperty("headers").TryGetProperty("x-ztm-target-port", out _));
        Assert.False(echo.GetProperty("headers").TryGetProperty("x-ztm-app-protocol", out _));
    }

    [Theory]
    [InlineData("orders")]
    [InlineData("orders.shop")]
    [InlineData("orders.shop:{port}")]
    public async Task Http1_sent_straight_to_the_outbound_port_is_routed_by_its_Host_header(string host)
    {
        using var http = new HttpClient { Timeout = Mesh.Timeout };
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{_mesh.Frontend.Outbound}/by-host");
        request.Headers.Host = host.Replace("{port}", _mesh.Orders.HttpPort.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);

        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var echo = await EchoClient.ReadEcho(response);
        Assert.Equal("orders", echo.GetProperty("app").GetString());
        Assert.Equal("/by-host", echo.GetProperty("path").GetString());
        Assert.Equal(Frontend, echo.GetProperty("caller").GetString());
    }

    [Fact]
    public async Task An_identity_header_sent_by_the_app_is_replaced_by_the_verified_identity()
    {
        foreach (var handler in new[] { Mesh.Proxied(_mesh.Frontend), Mesh.HostAddressed(_mesh.Frontend) })
        {
            using var http = new HttpClient(handler) { Timeout = Mesh.Timeout };
            foreach (var version in new[] { HttpVersion.Version11, HttpVersion.Version20 })
            {
                if (version == HttpVersion.Version20 && handler.UseProxy)
                {
                    continue; // an HTTP proxy is spoken to in HTTP/1.1
                }
                using var request = new HttpRequestMessage(HttpMethod.Get, $"{OrdersHttp}/spoof") { Version = version, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
                request.Headers.Add("x-ztm-client-identity", "spiffe://cluster.local/ns/shop/sa/admin");

                using var response = await http.SendAsync(request);

                var echo = await EchoClient.ReadEcho(response);
                Assert.Equal(Frontend, echo.GetProperty("caller").GetString());
                Assert.Equal(Frontend, echo.GetProperty("headers").GetProperty("x-ztm-client-identity").GetString());
            }
        }
    }

    [Fact]
    public async Task Status_codes_of_the_app_come_back_unchanged()
    {
        using var http = new HttpClient(Mesh.HostAddressed(_mesh.Frontend)) { Timeout = Mesh.Timeout };

        using var response = await http.GetAsync($"{OrdersHttp}/status/418");

        Assert.Equal((HttpStatusCode)418, response.StatusCode);
        Assert.Equal(Frontend, (await EchoClient.ReadEcho(response)).GetProperty("caller").GetString());
    }

    // ---- HTTP/2 and gRPC ----

    [Fact]
    public async Task H2c_prior_knowledge_reaches_orders_as_HTTP2_with_its_trailer()
    {
        using var http = new HttpClient(Mesh.HostAddressed(_mesh.Frontend)) { Timeout = Mesh.Timeout };
        using var request = new HttpRequestMessage(HttpMethod.Post, $"{OrdersHttp}/h2?x=1")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(new byte[1000]),
        };

        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version20, response.Version);
        var echo = await EchoClient.ReadEcho(response);
        Assert.Equal("HTTP/2", echo.GetProperty("protocol").GetString());
        Assert.Equal("/h2", echo.GetProperty("path").GetString());
        Assert.Equal(1000, echo.GetProperty("bodyBytes").GetInt64());
        Assert.Equal(Frontend, echo.GetProperty("caller").GetString());
        Assert.Equal(["done"], response.TrailingHeaders.GetValues("x-demo-trailer"));
    }

    [Fact]
    public async Task Grpc_unary_through_the_sidecars_carries_the_caller_and_the_trailers()
    {
        using var channel = GrpcChannel();
        var client = new Echo.EchoClient(channel);

        using var call = client.UnaryAsync(new EchoRequest { Message = "ping" }, deadline: DateTime.UtcNow.Add(Mesh.Timeout));
        var reply = await call;

        Assert.Equal("ping", reply.Message);
        Assert.Equal(Frontend, reply.Caller);
        Assert.Equal(1UL, reply.Sequence);
        Assert.Equal("orders", reply.App);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        Assert.Equal("done", call.GetTrailers().GetValue("x-demo-trailer"));
    }

    [Fact]
    public async Task Grpc_bidirectional_chat_through_the_sidecars_answers_each_message_in_order()
    {
        using var channel = GrpcChannel();
        var client = new Echo.EchoClient(channel);
        var messages = Enumerable.Range(1, 20).Select(i => $"message {i}").ToList();

        using var call = client.Chat(deadline: DateTime.UtcNow.Add(Mesh.Timeout));
        var replies = new List<EchoReply>();
        foreach (var message in messages)
        {
            // Each reply before the next request: the sidecars stream, they do not buffer until the end.
            await call.RequestStream.WriteAsync(new EchoRequest { Message = message });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            replies.Add(call.ResponseStream.Current);
        }
        await call.RequestStream.CompleteAsync();
        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None));

        Assert.Equal(messages, replies.Select(r => r.Message));
        Assert.Equal(Enumerable.Range(1, 20).Select(i => (ulong)i), replies.Select(r => r.Sequence));
        Assert.All(replies, r => Assert.Equal(Frontend, r.Caller));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        Assert.Equal("done", call.GetTrailers().GetValue("x-demo-trailer"));
    }

    [Fact]
    public async Task Grpc_error_status_of_an_unknown_method_comes_back_through_the_sidecars()
    {
        using var http = new HttpClient(Mesh.HostAddressed(_mesh.Frontend)) { Timeout = Mesh.Timeout };
        using var request = new HttpRequestMessage(HttpMethod.Post, $"http://orders:{_mesh.Orders.GrpcPort}/ztm.v1.Echo/NoSuchMethod")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent([0, 0, 0, 0, 0]),
        };
        request.Content.Headers.ContentType = new("application/grpc");
        request.Headers.TE.ParseAdd("trailers");

        using var response = await http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var status = response.TrailingHeaders.TryGetValues("grpc-status", out var s) ? s.Single()
            : response.Headers.GetValues("grpc-status").Single(); // trailers-only response
        Assert.Equal(((int)StatusCode.Unimplemented).ToString(CultureInfo.InvariantCulture), status);
    }

    // ---- Large bodies ----

    [Fact]
    public async Task A_50_MB_response_and_a_20_MB_upload_are_streamed_through_the_sidecars()
    {
        const long download = 50L * 1024 * 1024;
        const long upload = 20L * 1024 * 1024;
        using var http = new HttpClient(Mesh.HostAddressed(_mesh.Frontend)) { Timeout = TimeSpan.FromMinutes(2) };
        Sidecar[] sidecars = [_mesh.Frontend, _mesh.OrdersSidecar];
        var peakBefore = sidecars.Select(s => PeakRss(s.Process.Pid)).ToList();

        using (var response = await http.GetAsync($"{OrdersHttp}/bytes/{download}", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(download, await ReadPattern(response));
        }
        using (var request = new HttpRequestMessage(HttpMethod.Post, $"{OrdersHttp}/upload") { Content = new EchoClient.StreamedContent(upload) })
        using (var response = await http.SendAsync(request))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var echo = await EchoClient.ReadEcho(response);
            Assert.Equal(upload, echo.GetProperty("bodyBytes").GetInt64());
            Assert.Equal(Frontend, echo.GetProperty("caller").GetString());
        }

        // Streamed, not buffered: neither sidecar's peak resident memory grew by even half the 50 MB body
        // (what grows is the GC's and the pipes' working set, not the body).
        for (var i = 0; i < sidecars.Length; i++)
        {
            var growth = PeakRss(sidecars[i].Process.Pid) - peakBefore[i];
            Assert.True(growth < download / 2, $"{sidecars[i].Process.Name}'s peak RSS grew by {growth / 1024 / 1024} MiB moving a {download / 1024 / 1024} MiB and a {upload / 1024 / 1024} MiB body");
        }
    }

    // ---- WebSocket ----

    [Fact]
    public async Task WebSocket_upgrade_through_the_sidecars_echoes_messages()
    {
        using var socket = new ClientWebSocket();
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        using var invoker = new HttpMessageInvoker(Mesh.HostAddressed(_mesh.Frontend));
        await socket.ConnectAsync(new Uri($"ws://orders:{_mesh.Orders.HttpPort}/ws"), invoker, timeout.Token);

        var big = RandomNumberGenerator.GetBytes(100_000);
        foreach (var (message, type) in new[] { (Encoding.UTF8.GetBytes("hello"), WebSocketMessageType.Text), (big, WebSocketMessageType.Binary) })
        {
            await socket.SendAsync(message, type, endOfMessage: true, timeout.Token);
            var (echoed, echoedType) = await EchoClient.ReceiveMessage(socket, timeout.Token);
            Assert.Equal(type, echoedType);
            Assert.Equal(message, echoed);
        }

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", timeout.Token);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
    }

    // ---- Opaque TCP ----

    [Fact]
    public async Task Tcp_through_CONNECT_echoes_1_MB_and_answers_the_half_close()
    {
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(_mesh.Frontend.Outbound, timeout.Token);
        var head = await ConnectAsync(socket, $"orders.shop:{_mesh.Orders.TcpPort}", timeout.Token);
        Assert.StartsWith("HTTP/1.1 200 ", head, StringComparison.Ordinal);

        var sent = RandomNumberGenerator.GetBytes(1_000_000);
        var receiving = EchoClient.ReceiveToEnd(socket, timeout.Token);
        await socket.SendAsync(sent, SocketFlags.None, timeout.Token);
        // Half-close: the echo still comes back in full, then the relay closes our receiving side.
        socket.Shutdown(SocketShutdown.Send);
        var received = await receiving;

        Assert.Equal(sent.Length, received.Length);
        Assert.True(sent.AsSpan().SequenceEqual(received), "the echo differs from what was sent");
        var metrics = await Mesh.MetricsAsync(_mesh.OrdersSidecar);
        Assert.True(Mesh.Sample(metrics, "ztm_tcp_bytes_total", ("direction", "inbound"), ("flow", "received")) >= sent.Length, metrics);
    }

    // ---- Tracing ----

    [Fact]
    public async Task W3C_traceparent_and_tracestate_pass_through_unchanged()
    {
        const string traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        const string tracestate = "congo=t61rcWkgMzE";
        foreach (var version in new[] { HttpVersion.Version11, HttpVersion.Version20 })
        {
            using var http = new HttpClient(Mesh.HostAddressed(_mesh.Frontend)) { Timeout = Mesh.Timeout };
            using var request = new HttpRequestMessage(HttpMethod.Get, $"{OrdersHttp}/traced") { Version = version, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
            request.Headers.Add("traceparent", traceparent);
            request.Headers.Add("tracestate", tracestate);

            using var response = await http.SendAsync(request);

            var headers = (await EchoClient.ReadEcho(response)).GetProperty("headers");
            Assert.Equal(traceparent, headers.GetProperty("traceparent").GetString());
            Assert.Equal(tracestate, headers.GetProperty("tracestate").GetString());
        }
    }

    // ---- Telemetry ----

    [Fact]
    public async Task Metrics_count_requests_by_direction_identities_and_code_and_an_access_log_line_is_written()
    {
        var ordersMark = _mesh.OrdersSidecar.Process.LineCount;
        var frontendMark = _mesh.Frontend.Process.LineCount;
        var before = await Mesh.MetricsAsync(_mesh.OrdersSidecar);
        using var http = new HttpClient(Mesh.HostAddressed(_mesh.Frontend)) { Timeout = Mesh.Timeout };

        using (var response = await http.GetAsync($"{OrdersHttp}/status/503?metrics"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }

        var inbound = await Mesh.MetricsAsync(_mesh.OrdersSidecar);
        var outbound = await Mesh.MetricsAsync(_mesh.Frontend);
        (string, string)[] inboundLabels = [("direction", "inbound"), ("source", Frontend), ("destination", Orders), ("code", "503")];
        Assert.Equal(Mesh.Sample(before, "ztm_requests_total", inboundLabels) + 1, Mesh.Sample(inbound, "ztm_requests_total", inboundLabels));
        Assert.True(Mesh.Sample(outbound, "ztm_requests_total", ("direction", "outbound"), ("source", Frontend), ("destination", Orders), ("code", "503")) >= 1, outbound);
        Assert.True(Mesh.Sample(inbound, "ztm_request_duration_seconds_count", ("direction", "inbound")) >= 1, inbound);

        // The certificate's expiry, as Unix time, in the future.
        var expiry = Mesh.Sample(inbound, "ztm_certificate_expiry_timestamp_seconds");
        Assert.InRange(expiry, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), DateTimeOffset.UtcNow.AddDays(2).ToUnixTimeSeconds());

        // One JSON access-log line on each sidecar's stdout.
        var inboundLine = await _mesh.OrdersSidecar.Process.WaitForLineAsync(l => l.Contains("\"log\":\"access\"", StringComparison.Ordinal) && l.Contains("/status/503", StringComparison.Ordinal), "inbound access log", after: ordersMark);
        using (var log = JsonDocument.Parse(inboundLine))
        {
            var entry = log.RootElement;
            Assert.Equal("inbound", entry.GetProperty("direction").GetString());
            Assert.Equal(Frontend, entry.GetProperty("source").GetString());
            Assert.Equal(Orders, entry.GetProperty("destination").GetString());
            Assert.Equal("GET", entry.GetProperty("method").GetString());
            Assert.Equal(503, entry.GetProperty("status").GetInt32());
            Assert.True(entry.GetProperty("duration_ms").GetDouble() >= 0);
        }
        var outboundLine = await _mesh.Frontend.Process.WaitForLineAsync(l => l.Contains("\"log\":\"access\"", StringComparison.Ordinal) && l.Contains("/status/503", StringComparison.Ordinal), "outbound access log", after: frontendMark);
        using (var log = JsonDocument.Parse(outboundLine))
        {
            Assert.Equal("outbound", log.RootElement.GetProperty("direction").GetString());
            Assert.Equal(Orders, log.RootElement.GetProperty("destination").GetString());
        }
    }

    // ---- helpers ----

    private GrpcChannel GrpcChannel() =>
        Grpc.Net.Client.GrpcChannel.ForAddress($"http://orders:{_mesh.Orders.GrpcPort}", new GrpcChannelOptions { HttpHandler = Mesh.HostAddressed(_mesh.Frontend) });

    /// <summary>Sends a CONNECT and returns the response head.</summary>
    internal static async Task<string> ConnectAsync(Socket socket, string authority, CancellationToken cancellation)
    {
        await socket.SendAsync(Encoding.ASCII.GetBytes($"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"), SocketFlags.None, cancellation);
        var head = new List<byte>();
        var one = new byte[1];
        while (!(head.Count >= 4 && head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
        {
            if (await socket.ReceiveAsync(one, SocketFlags.None, cancellation) == 0)
            {
                break;
            }
            head.Add(one[0]);
        }
        return Encoding.ASCII.GetString([.. head]);
    }

    private static async Task<long> ReadPattern(HttpResponseMessage response)
    {
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
        return total;
    }

    /// <summary>Peak resident set size (VmHWM) of a process, in bytes.</summary>
    private static long PeakRss(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").Single(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }
}

/// <summary>Every data-plane test again with the orders sidecar's <c>--http1-fast-path</c> on (what it does not carry goes through YARP).</summary>
[Collection(DataPlaneHttp1FastPathCollection.Name)]
public sealed class DataPlaneTestsWithHttp1FastPath(DataPlaneHttp1FastPathFixture fixture, ITestOutputHelper output) : DataPlaneTests(fixture, output);
