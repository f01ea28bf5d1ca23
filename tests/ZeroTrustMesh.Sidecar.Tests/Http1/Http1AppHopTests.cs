using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Sidecar.Observations;
using ZeroTrustMesh.Sidecar.Tests.Inbound;

namespace ZeroTrustMesh.Sidecar.Tests.Http1;

/// <summary>
/// <c>--http1-fast-path</c> in the real inbound path: what the app receives and what the caller gets back are compared
/// with the YARP path's on the same requests (two sidecars, one with the flag), against a real Kestrel app and, for the
/// failures, an app played on a raw socket.
/// </summary>
public sealed class Http1AppHopTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private const string Open = InboundTestHost.PermissiveAndOpen;

    internal static async Task<InboundTestHost> StartAsync(bool fastPath, int? firstAppPort = null, TimeProvider? time = null)
    {
        var host = await InboundTestHost.StartAsync(http1FastPath: fastPath, firstAppPort: firstAppPort, time: time);
        host.Apply("v1", Open, PolicyKinds.Builtin);
        return host;
    }

    /// <summary>The request both sidecars forward; the app answers with the request line's path and the headers it got.</summary>
    private static HttpRequestMessage HeadersRequest(HttpContent? content = null)
    {
        var request = new HttpRequestMessage(content is null ? HttpMethod.Get : HttpMethod.Post, "/headers/a%20b/%C3%A9?q=1&r=%2F") { Content = content };
        request.Headers.Host = "orders.shop";
        request.Headers.TryAddWithoutValidation("X-Custom", ["one", "two"]);
        request.Headers.TryAddWithoutValidation("Cookie", ["a=1", "b=2"]);
        request.Headers.TryAddWithoutValidation(MeshHeaders.ClientIdentity, "spiffe://cluster.local/ns/evil/sa/spoof");
        request.Headers.TryAddWithoutValidation("x_ztm_client_identity", "spiffe://cluster.local/ns/evil/sa/spoof");
        request.Headers.TryAddWithoutValidation("Keep-Alive", "timeout=5");
        request.Headers.TryAddWithoutValidation("Proxy-Connection", "keep-alive");
        request.Headers.TryAddWithoutValidation("TE", "trailers");
        request.Headers.TryAddWithoutValidation("Accept-Encoding", "gzip");
        request.Headers.UserAgent.ParseAdd("tests/1.0");
        return request;
    }

    [Theory]
    [InlineData(null)]
    [InlineData("length")]
    [InlineData("chunked")]
    public async Task The_app_receives_the_same_request_head_with_the_flag_on_as_off(string? body)
    {
        var seen = new List<string>();
        foreach (var fastPath in new[] { false, true })
        {
            await using var host = await StartAsync(fastPath);
            using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
            HttpContent? content = body switch
            {
                "length" => new StringContent("hello"),
                "chunked" => new StreamContent(new NonSeekable("hello")),
                _ => null,
            };
            using var response = await http.SendAsync(HeadersRequest(content));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var lines = (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Order(StringComparer.Ordinal).ToList();
            Assert.Contains("Host: orders.shop", lines);
            Assert.DoesNotContain(lines, l => l.Contains("spoof", StringComparison.Ordinal) || l.StartsWith("Keep-Alive", StringComparison.Ordinal) || l.StartsWith("TE:", StringComparison.Ordinal));
            seen.Add(string.Join("\n", lines));
        }
        Assert.Equal(seen[0], seen[1]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Bodies_both_ways_arrive_whole_by_length_and_chunked(bool fastPath)
    {
        await using var host = await StartAsync(fastPath);
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
        var large = string.Concat(Enumerable.Range(0, 100_000).Select(i => (char)('a' + i % 26))) + "|end";
        foreach (var text in new[] { "", "small", large })
        {
            foreach (var chunkedRequest in new[] { false, true })
            {
                foreach (var query in new[] { "", "?length" })
                {
                    HttpContent content = chunkedRequest ? new StreamContent(new NonSeekable(text)) : new StringContent(text);
                    using var response = await http.PostAsync(new Uri("/respond" + query, UriKind.Relative), content);
                    Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                    Assert.Equal(text, await response.Content.ReadAsStringAsync());
                    if (query != "")
                    {
                        Assert.Equal(text.Length, response.Content.Headers.ContentLength);
                    }
                    else if (text.Length > 1000)
                    {
                        Assert.True(response.Headers.TransferEncodingChunked); // chunked from the app, chunked on
                    }
                }
            }
        }
    }

    [Fact]
    public async Task Status_headers_and_observations_are_the_same_with_the_flag_on_as_off()
    {
        var seen = new List<string>();
        foreach (var fastPath in new[] { false, true })
        {
            await using var host = await StartAsync(fastPath);
            using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
            using var response = await http.PostAsync(new Uri("/respond?status=418&type=text/x-tea&length", UriKind.Relative), new StringContent("short and stout"));
            using var head = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/secret"));
            var recorded = new List<RequestObservation>();
            host.Observations.Drain(recorded, 10);
            seen.Add($"{(int)response.StatusCode} {response.Content.Headers.ContentType} {response.Content.Headers.ContentLength} {await response.Content.ReadAsStringAsync()}"
                + $" | HEAD {(int)head.StatusCode} {head.Content.Headers.ContentLength} '{await head.Content.ReadAsStringAsync()}'"
                + string.Concat(recorded.Select(o => $" | {o.Method} {o.Path} {o.Status} {o.RequestBytes} {o.ResponseBytes} {o.Allowed}")));
        }
        Assert.Equal("418 text/x-tea 15 short and stout | HEAD 200 23 '' | POST /respond 418 15 15 True | HEAD /secret 200 0 23 True", seen[0]);
        Assert.Equal(seen[0], seen[1]);
    }

    [Fact]
    public async Task A_keep_alive_connection_to_the_app_is_reused_and_one_the_app_closes_is_not()
    {
        await using var host = await StartAsync(fastPath: true);
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
        async Task<string> Connection() => await http.GetStringAsync(new Uri("/connection", UriKind.Relative));

        var first = await Connection();
        Assert.Equal(first, await Connection());
        Assert.Equal(first, await Connection());
        Assert.Equal("closing", await http.GetStringAsync(new Uri("/close", UriKind.Relative)));
        var afterClose = await Connection(); // the closed one was not pooled: a new connection, and no failure
        Assert.NotEqual(first, afterClose);
        Assert.Equal(afterClose, await Connection());
    }

    [Theory]
    [InlineData("/close-early", "Request (")]
    [InlineData("/garbage", "Request (")]
    [InlineData("/bad-header-name", "Request (")]
    [InlineData("/bad-status", "Request (")]
    public async Task An_app_that_fails_to_answer_gets_the_same_502_as_on_the_YARP_path(string path, string error)
    {
        await using var app = await RawApp.StartAsync();
        foreach (var fastPath in new[] { false, true })
        {
            await using var host = await StartAsync(fastPath, app.Port);
            using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
            using var response = await http.GetAsync(new Uri(path, UriKind.Relative));
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
            var reason = await response.Content.ReadAsStringAsync();
            Assert.StartsWith($"forward to the app on port {app.Port} failed: {error}", reason, StringComparison.Ordinal);
            var recorded = new List<RequestObservation>();
            host.Observations.Drain(recorded, 10);
            Assert.Equal(502, Assert.Single(recorded).Status);
        }
    }

    /// <summary>
    /// Which hop carried the request, seen from outside: a response with bare LF line ends is one HttpClient
    /// accepts and the fast path's framing refuses, so with the flag it must be a 502 — if every request fell back to
    /// YARP, the flag-on runs of the other tests would pass all the same and this one would not.
    /// </summary>
    [Fact]
    public async Task With_the_flag_the_fast_path_carries_the_request_not_YARP()
    {
        await using var app = await RawApp.StartAsync();
        foreach (var (fastPath, expected) in new[] { (false, HttpStatusCode.OK), (true, HttpStatusCode.BadGateway) })
        {
            await using var host = await StartAsync(fastPath, app.Port);
            using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
            using var response = await http.GetAsync(new Uri("/bare-lf", UriKind.Relative));
            Assert.Equal(expected, response.StatusCode);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_body_cut_short_by_the_app_is_not_passed_on_as_complete(bool fastPath)
    {
        await using var app = await RawApp.StartAsync();
        await using var host = await StartAsync(fastPath, app.Port);
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
        foreach (var path in new[] { "/short-length", "/short-chunked", "/bad-chunk" })
        {
            var failed = await Record.ExceptionAsync(async () =>
            {
                using var response = await http.GetAsync(new Uri(path, UriKind.Relative));
                if (response.StatusCode == HttpStatusCode.BadGateway)
                {
                    throw new IOException("refused before the response started"); // found out before anything was passed on
                }
                await response.Content.ReadAsStringAsync();
                Assert.Fail($"{path}: {(int)response.StatusCode}, the whole body read");
            });
            Assert.True(failed is HttpRequestException or IOException, $"{path}: {failed}");
        }
    }

    [Fact]
    public async Task An_app_that_does_not_answer_within_the_activity_timeout_gets_a_502_naming_the_timeout()
    {
        await using var app = await RawApp.StartAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await StartAsync(fastPath: true, app.Port, time);
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
        var sent = http.GetAsync(new Uri("/hang", UriKind.Relative));
        await app.Hanging.WaitAsync(Timeout);
        time.Advance(TimeSpan.FromSeconds(99));
        Assert.False(sent.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(2));
        using var response = await sent.WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.StartsWith($"forward to the app on port {app.Port} failed: RequestTimedOut", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upgrades_and_Expect_continue_go_through_YARP()
    {
        await using var host = await StartAsync(fastPath: true);
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
        var request = new HttpRequestMessage(HttpMethod.Post, "/echo") { Content = new StringContent("with expect") };
        request.Headers.ExpectContinue = true;
        using var response = await http.SendAsync(request);
        Assert.Equal("with expect", await response.Content.ReadAsStringAsync());
        // An upgrade the app does not take is answered by the app, through YARP, with the headers it got.
        var raw = await host.SendRawAsync("GET /headers HTTP/1.1\r\nHost: orders.shop\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n", Timeout);
        Assert.StartsWith("HTTP/1.1 200", raw, StringComparison.Ordinal);
    }

    /// <summary>A request body without a length, so HttpClient sends it chunked.</summary>
    private sealed class NonSeekable(string text) : MemoryStream(Encoding.UTF8.GetBytes(text))
    {
        public override bool CanSeek => false;
    }

    /// <summary>An app played on a raw socket, answering by the request's path: what a Kestrel app would never send.</summary>
    private sealed class RawApp : IAsyncDisposable
    {
        private readonly TcpListener _listener;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _accepting;

        private RawApp(TcpListener listener)
        {
            _listener = listener;
            _accepting = AcceptAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        /// <summary>Set once a request for <c>/hang</c> arrived (it is never answered).</summary>
        public Task Hanging => _hanging.Task;

        private readonly TaskCompletionSource _hanging = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public static Task<RawApp> StartAsync()
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return Task.FromResult(new RawApp(listener));
        }

        private async Task AcceptAsync()
        {
            try
            {
                while (true)
                {
                    var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    _ = ServeAsync(client);
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        private async Task ServeAsync(TcpClient client)
        {
            using (client)
            {
                var stream = client.GetStream();
                var head = new StringBuilder();
                var buffer = new byte[4096];
                while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var read = await stream.ReadAsync(buffer, _stop.Token);
                    if (read == 0)
                    {
                        return;
                    }
                    head.Append(Encoding.ASCII.GetString(buffer, 0, read));
                }
                var path = head.ToString().Split(' ')[1];
                var answer = path switch
                {
                    "/close-early" => "",
                    "/garbage" => "garbage\r\n\r\n",
                    "/bad-header-name" => "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
                    "/bad-status" => "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
                    "/bare-lf" => "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
                    "/short-length" => "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
                    "/short-chunked" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                    "/bad-chunk" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
                    _ => null,
                };
                if (answer is null)
                {
                    _hanging.TrySetResult();
                    await Task.Delay(System.Threading.Timeout.Infinite, _stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
                    return;
                }
                await stream.WriteAsync(Encoding.ASCII.GetBytes(answer), _stop.Token);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting;
            _stop.Dispose();
        }
    }
}
