using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Sidecar.Inbound;

namespace ZeroTrustMesh.Sidecar.Tests.Inbound;

/// <summary>
/// Requests that policy and the app could read differently: escaped slashes and backslashes, header names a framework
/// folds into the identity header, HTTP/2 requests framed twice. Each is refused (or made one reading) before any stage.
/// </summary>
public sealed class InboundRequestPathTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    /// <summary>Plaintext accepted (to reach the pipeline from a test), and only <c>/orders/*</c> allowed.</summary>
    private const string OrdersOnly = InboundTestHost.Permissive + """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-paths, namespace: shop}
        spec:
          selector: {service: orders}
          rules: [{to: [{operation: {paths: ["/orders/*"]}}]}]

        """;

    [Theory]
    [InlineData("/orders/..%2fpayments")]
    [InlineData("/orders/..%2Fpayments")]
    [InlineData("/orders/..%5cpayments")]
    [InlineData("/orders/..\\payments")]
    public async Task A_path_with_an_escaped_slash_or_a_backslash_is_refused_by_default(string path)
    {
        await using var host = await InboundTestHost.StartAsync();
        host.Apply("v1", OrdersOnly, PolicyKinds.Builtin);

        var answer = await host.SendRawAsync($"GET {path} HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n", Timeout);

        Assert.StartsWith("HTTP/1.1 400", answer, StringComparison.Ordinal);
        Assert.Contains("escaped slash or a backslash", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("path=", answer, StringComparison.Ordinal); // the app never saw it
    }

    [Fact]
    public async Task With_unescape_policy_and_app_read_the_same_decoded_path()
    {
        await using var host = await InboundTestHost.StartAsync(escapedSlashes: EscapedSlashes.Unescape);
        host.Apply("v1", OrdersOnly, PolicyKinds.Builtin);

        var escaped = await host.SendRawAsync("GET /orders/..%2fpayments HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n", Timeout);
        Assert.StartsWith("HTTP/1.1 403", escaped, StringComparison.Ordinal); // it is /payments, which no rule allows

        var inside = await host.SendRawAsync("GET /orders/a%2F..%2Fb//c HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n", Timeout);
        Assert.StartsWith("HTTP/1.1 200", inside, StringComparison.Ordinal);
        Assert.Contains("path=/orders/b/c\n", inside, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Repeated_slashes_are_merged_for_policy_and_app_alike()
    {
        await using var host = await InboundTestHost.StartAsync();
        host.Apply("v1", OrdersOnly, PolicyKinds.Builtin);

        var answer = await host.SendRawAsync("GET //orders///1 HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n", Timeout);

        Assert.StartsWith("HTTP/1.1 200", answer, StringComparison.Ordinal);
        Assert.Contains("path=/orders/1\n", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Header_names_that_fold_into_a_mesh_header_never_reach_the_app()
    {
        await using var host = await InboundTestHost.StartAsync();
        host.Apply("v1", OrdersOnly, PolicyKinds.Builtin);

        var answer = await host.SendRawAsync(
            "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nx_ztm_client_identity: spiffe://cluster.local/ns/shop/sa/admin\r\n"
            + "X-Ztm_Client-Identity: spiffe://cluster.local/ns/shop/sa/admin\r\nx_tenant: acme\r\nConnection: close\r\n\r\n", Timeout);

        Assert.StartsWith("HTTP/1.1 200", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("sa/admin", answer, StringComparison.Ordinal);
        Assert.Contains("x_tenant: acme", answer, StringComparison.Ordinal); // other names with '_' are the app's business
    }

    [Fact]
    public async Task An_http2_request_with_transfer_encoding_is_refused_and_te_trailers_passes()
    {
        await using var host = await InboundTestHost.StartAsync();
        host.Apply("v1", OrdersOnly, PolicyKinds.Builtin);

        var (status, body) = await Http2GetAsync(host, "/orders/1", ("transfer-encoding", "chunked"));
        Assert.Equal(400, status);
        Assert.Contains("the connection-specific header 'transfer-encoding' is not allowed (RFC 9113", body, StringComparison.Ordinal);

        var ok = await Http2GetAsync(host, "/orders/1", ("te", "trailers"));
        Assert.True(ok.Status == 200, ok.Body);
    }

    [Theory]
    [InlineData("connection", "keep-alive")]
    [InlineData("keep-alive", "timeout=5")]
    [InlineData("proxy-connection", "keep-alive")]
    [InlineData("upgrade", "websocket")]
    [InlineData("te", "gzip")]
    public async Task Other_connection_specific_headers_in_http2_never_reach_the_app(string name, string value)
    {
        await using var host = await InboundTestHost.StartAsync();
        host.Apply("v1", OrdersOnly, PolicyKinds.Builtin);

        // Refused by us (400) or by Kestrel's HTTP/2 parser (a connection or stream error): either way, not forwarded.
        var (status, body) = await Http2GetAsync(host, "/orders/1", (name, value));

        Assert.True(status is 400 or < 0, $"{status}: {body}");
    }

    [Theory]
    [InlineData("/a//b", "/a/b")]
    [InlineData("/", "/")]
    [InlineData("", "/")]
    [InlineData("/orders/..%2fpayments", "/payments")]
    [InlineData("/orders/..%5Cpayments/", "/payments/")]
    [InlineData("/a\\b\\..\\c", "/a/c")]
    [InlineData("/a/%2e%2e/b", "/a/%2e%2e/b")] // Kestrel decodes %2e before us; left as it comes
    [InlineData("/../..%2f..", "/")]
    public void Unescaping_decodes_and_removes_the_dot_segments_that_appear(string path, string expected)
    {
        Assert.Equal(expected, InboundPath.Normalize(path, EscapedSlashes.Unescape, out var refusal));
        Assert.Null(refusal);
    }

    [Fact]
    public void Keep_leaves_escaped_slashes_alone()
    {
        Assert.Equal("/orders/..%2fpayments", InboundPath.Normalize("/orders/..%2fpayments", EscapedSlashes.Keep, out _));
        Assert.Null(InboundPath.Normalize("/a%2Fb", EscapedSlashes.Reject, out var refusal));
        Assert.NotNull(refusal);
    }

    /// <summary>
    /// One HTTP/2 GET over h2c with prior knowledge, written frame by frame so that it can carry headers HTTP/2 forbids
    /// (HttpClient would not send them). Returns the response status and body.
    /// </summary>
    private static async Task<(int Status, string Body)> Http2GetAsync(InboundTestHost host, string path, (string Name, string Value) extra)
    {
        using var cancel = new CancellationTokenSource(Timeout);
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, host.InboundPort, cancel.Token);
        var stream = client.GetStream();
        var block = new MemoryStream();
        foreach (var (name, value) in new[] { (":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "orders"), ("x-ztm-target-port", host.Http2AppPort.ToString(System.Globalization.CultureInfo.InvariantCulture)), extra })
        {
            // HPACK literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2).
            block.WriteByte(0);
            block.WriteByte((byte)name.Length);
            block.Write(Encoding.ASCII.GetBytes(name));
            block.WriteByte((byte)value.Length);
            block.Write(Encoding.ASCII.GetBytes(value));
        }
        var request = new MemoryStream();
        request.Write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8);
        WriteFrame(request, 4, 0, 0, []); // SETTINGS
        WriteFrame(request, 1, 0x5, 1, block.ToArray()); // HEADERS, END_STREAM | END_HEADERS, stream 1
        await stream.WriteAsync(request.ToArray(), cancel.Token);

        int? status = null;
        var body = new MemoryStream();
        var header = new byte[9];
        while (true)
        {
            await stream.ReadExactlyAsync(header, cancel.Token);
            var length = (header[0] << 16) | (header[1] << 8) | header[2];
            var (type, flags, id) = (header[3], header[4], BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(5)) & int.MaxValue);
            var payload = new byte[length];
            await stream.ReadExactlyAsync(payload, cancel.Token);
            if (type == 7)
            {
                return (-2, $"connection closed (GOAWAY, error code {BinaryPrimitives.ReadInt32BigEndian(payload.AsSpan(4))})");
            }
            if (type == 4 && (flags & 1) == 0)
            {
                await stream.WriteAsync(Frame(4, 1, 0, []), cancel.Token); // ACK the server's SETTINGS
            }
            if (id != 1)
            {
                continue;
            }
            switch (type)
            {
                case 1:
                    // Kestrel sends :status first: from the HPACK static table (0x88 = 200, 0x8C = 400, …), or as a literal
                    // with the static name :status (0x48, then the 3-byte value).
                    status = payload[0] == 0x48 ? int.Parse(Encoding.ASCII.GetString(payload, 2, 3), System.Globalization.CultureInfo.InvariantCulture)
                        : (payload[0] & 0x7F) switch { 8 => 200, 9 => 204, 10 => 206, 11 => 304, 12 => 400, 13 => 404, 14 => 500, var other => -1000 - other };
                    break;
                case 0:
                    body.Write(payload);
                    break;
                case 3:
                    return (-1, $"stream reset, error code {BinaryPrimitives.ReadInt32BigEndian(payload)}");
            }
            if ((flags & 1) != 0)
            {
                return (status ?? 0, Encoding.UTF8.GetString(body.ToArray()));
            }
        }
    }

    private static void WriteFrame(Stream stream, byte type, byte flags, int streamId, byte[] payload) => stream.Write(Frame(type, flags, streamId, payload));

    private static byte[] Frame(byte type, byte flags, int streamId, byte[] payload)
    {
        var frame = new byte[9 + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(5), streamId);
        payload.CopyTo(frame, 9);
        return frame;
    }
}
