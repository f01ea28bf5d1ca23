using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Xunit;
using ZeroTrustMesh.Sidecar.Http1;

namespace ZeroTrustMesh.Sidecar.Tests.Http1;

/// <summary>The HTTP/1.1 framing on its own: one example per refusal class, heads split across segments, body framing,
/// response heads, the head deadline on a fake clock, and no allocation per request.</summary>
public sealed class Http1FramingTests
{
    [Theory]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", nameof(Http1Refusal.ContentLengthWithTransferEncoding))]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", nameof(Http1Refusal.DuplicateContentLength))]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", nameof(Http1Refusal.InvalidContentLength))]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", nameof(Http1Refusal.InvalidContentLength))]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", nameof(Http1Refusal.ObsFold))]
    [InlineData("GET / HTTP/1.1\nHost: a\r\n\r\n", nameof(Http1Refusal.BareLineFeed))]
    [InlineData("GET / HTTP/1.1\r\nHost: a\n\r\n", nameof(Http1Refusal.BareLineFeed))]
    [InlineData("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", nameof(Http1Refusal.InvalidMethod))]
    [InlineData("GET /a\u0001b HTTP/1.1\r\nHost: a\r\n\r\n", nameof(Http1Refusal.InvalidTarget))]
    [InlineData("GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", nameof(Http1Refusal.InvalidTarget))]
    [InlineData("GET /a%FFb HTTP/1.1\r\nHost: a\r\n\r\n", nameof(Http1Refusal.InvalidTarget))]
    [InlineData("GET abc HTTP/1.1\r\nHost: a\r\n\r\n", nameof(Http1Refusal.InvalidTarget))]
    [InlineData("GET / HTTP/1.2\r\nHost: a\r\n\r\n", nameof(Http1Refusal.UnsupportedVersion))]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", nameof(Http1Refusal.InvalidHeaderName))]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", nameof(Http1Refusal.InvalidHeaderName))]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u0000c\r\n\r\n", nameof(Http1Refusal.InvalidHeaderValue))]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", nameof(Http1Refusal.InvalidHeaderValue))]
    [InlineData("GET / HTTP/1.1\r\n\r\n", nameof(Http1Refusal.MissingHost))]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", nameof(Http1Refusal.DuplicateHost))]
    [InlineData("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", nameof(Http1Refusal.InvalidHost))]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", nameof(Http1Refusal.FinalCodingNotChunked))]
    public void A_head_of_each_refusal_class_is_refused(string text, string refusal)
    {
        using var head = new Http1RequestHead(Http1Limits.Sidecar);
        var bytes = Encoding.Latin1.GetBytes(text);

        Assert.Equal(Http1ParseStatus.Refused, head.TryParse(new ReadOnlySequence<byte>(bytes)));
        Assert.Equal(Enum.Parse<Http1Refusal>(refusal), head.Refusal);
        // The same verdict whatever reads the bytes arrived in.
        Assert.Equal(Http1ParseStatus.Refused, head.TryParse(Segments.Of(bytes, [1, 5, bytes.Length - 3])));
        Assert.Equal(Enum.Parse<Http1Refusal>(refusal), head.Refusal);
    }

    [Fact]
    public void Oversized_heads_are_refused_at_kestrels_limits_and_not_before()
    {
        using var head = new Http1RequestHead(Http1Limits.Sidecar);
        var longLine = Encoding.ASCII.GetBytes("GET /" + new string('a', 9000));
        Assert.Equal(Http1ParseStatus.Refused, head.TryParse(new ReadOnlySequence<byte>(longLine)));
        Assert.Equal(Http1Refusal.RequestLineTooLong, head.Refusal);
        Assert.Equal(414, Http1Refusals.Status(head.Refusal));

        var bigField = Encoding.ASCII.GetBytes($"GET / HTTP/1.1\r\nHost: a\r\nX-Big: {new string('b', 33 * 1024)}\r\n\r\n");
        Assert.Equal(Http1ParseStatus.Refused, head.TryParse(new ReadOnlySequence<byte>(bigField)));
        Assert.Equal(Http1Refusal.HeadTooLarge, head.Refusal);
        Assert.Equal(431, Http1Refusals.Status(head.Refusal));

        var many = Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: a\r\n" + string.Concat(Enumerable.Range(0, 100).Select(i => $"X-{i}: {i}\r\n")) + "\r\n");
        Assert.Equal(Http1ParseStatus.Refused, head.TryParse(new ReadOnlySequence<byte>(many)));
        Assert.Equal(Http1Refusal.TooManyHeaders, head.Refusal);

        var incomplete = Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + new string('b', 30 * 1024));
        Assert.Equal(Http1ParseStatus.NeedMoreData, head.TryParse(new ReadOnlySequence<byte>(incomplete)));
    }

    [Fact]
    public void A_valid_head_gives_its_parts_and_framing_across_segments()
    {
        using var head = new Http1RequestHead(Http1Limits.Sidecar);
        var bytes = Encoding.ASCII.GetBytes("POST /orders?x=1 HTTP/1.1\r\nHost: orders:8080\r\nX-A:  spaced value \t\r\nContent-Length: 5\r\n\r\nhelloGET");

        foreach (var input in new[] { new ReadOnlySequence<byte>(bytes), Segments.Of(bytes, [3, 20, 40]) })
        {
            Assert.Equal(Http1ParseStatus.Complete, head.TryParse(input));
            Assert.Equal("POST", Encoding.ASCII.GetString(head.MethodBytes));
            Assert.Equal("/orders?x=1", Encoding.ASCII.GetString(head.TargetBytes));
            Assert.Equal(3, head.FieldCount);
            Assert.Equal("spaced value", Encoding.ASCII.GetString(Http1FieldSection.Value(head.Bytes.Span, head.Fields[1])));
            Assert.Equal(Http1BodyKind.ContentLength, head.BodyKind);
            Assert.Equal(5, head.ContentLength);
            Assert.Equal(bytes.Length - "helloGET".Length, head.Length);
        }
    }

    [Fact]
    public void Upgrade_connect_absolute_form_expect_and_other_codings_are_left_to_kestrel()
    {
        using var head = new Http1RequestHead(Http1Limits.Sidecar);
        foreach (var text in new[]
        {
            "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "CONNECT orders:80 HTTP/1.1\r\nHost: orders:80\r\n\r\n",
            "GET http://orders/x HTTP/1.1\r\nHost: orders\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        })
        {
            Assert.Equal(Http1ParseStatus.Fallback, head.TryParse(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(text))));
        }
    }

    [Theory]
    [InlineData("5\r\nhello\r\n0\r\n\r\nNEXT", "hello", "NEXT")]
    [InlineData("2;ext=1\r\nhe\r\n3\r\nllo\r\n0\r\nX-T: 1\r\n\r\nNEXT", "hello", "NEXT")]
    [InlineData("A\r\n0123456789\r\n0\r\n\r\n", "0123456789", "")]
    public void A_chunked_body_is_decoded_and_ends_where_the_next_message_starts(string body, string data, string rest)
    {
        var bytes = Encoding.ASCII.GetBytes(body);
        foreach (var input in new[] { new ReadOnlySequence<byte>(bytes), Segments.Of(bytes, [1, 2, 3, 7, 11]) })
        {
            var reader = new Http1Body(Http1BodyKind.Chunked, 0, 1024);
            var decoded = new ArrayBufferWriter<byte>();

            Assert.Equal(Http1BodyStatus.Complete, reader.Read(input, isCompleted: false, decoded, out var consumed));

            Assert.Equal(data, Encoding.ASCII.GetString(decoded.WrittenSpan));
            Assert.Equal(rest, Encoding.ASCII.GetString(input.Slice(consumed).ToArray()));
        }
    }

    [Fact]
    public void A_chunked_body_read_in_pieces_keeps_its_place()
    {
        var bytes = Encoding.ASCII.GetBytes("5\r\nhello\r\n0\r\n\r\n");
        var reader = new Http1Body(Http1BodyKind.Chunked, 0, 1024);
        var decoded = new ArrayBufferWriter<byte>();
        for (var i = 0; i < bytes.Length - 1; i++)
        {
            Assert.Equal(Http1BodyStatus.NeedMoreData, reader.Read(new ReadOnlySequence<byte>(bytes, i, 1), isCompleted: false, decoded, out _));
        }
        Assert.Equal(Http1BodyStatus.Complete, reader.Read(new ReadOnlySequence<byte>(bytes, bytes.Length - 1, 1), isCompleted: false, decoded, out _));
        Assert.Equal("hello", Encoding.ASCII.GetString(decoded.WrittenSpan));
    }

    [Theory]
    [InlineData("g\r\n", nameof(Http1Refusal.InvalidChunkSize))]
    [InlineData(" 5\r\nhello\r\n", nameof(Http1Refusal.InvalidChunkSize))]
    [InlineData("5 \r\nhello\r\n", nameof(Http1Refusal.InvalidChunkSize))]
    [InlineData("100000000\r\n", nameof(Http1Refusal.InvalidChunkSize))]
    [InlineData("5\nhello\r\n", nameof(Http1Refusal.InvalidChunkSize))]
    [InlineData("5;a\u0001\r\nhello\r\n", nameof(Http1Refusal.InvalidChunkExtension))]
    [InlineData("5;a\nb\r\nhello\r\n", nameof(Http1Refusal.InvalidChunkExtension))]
    [InlineData("5\r\nhelloX\r\n", nameof(Http1Refusal.InvalidChunkSuffix))]
    [InlineData("0\r\n obs\r\n\r\n", nameof(Http1Refusal.InvalidTrailer))]
    [InlineData("0\r\nX-T: a\u0000\r\n\r\n", nameof(Http1Refusal.InvalidTrailer))]
    public void Invalid_chunk_framing_is_refused(string body, string refusal)
    {
        var reader = new Http1Body(Http1BodyKind.Chunked, 0, 1024);

        Assert.Equal(Http1BodyStatus.Refused, reader.Read(new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes(body)), isCompleted: false, null, out _));
        Assert.Equal(Enum.Parse<Http1Refusal>(refusal), reader.Refusal);
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, nameof(Http1BodyKind.ContentLength))]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, nameof(Http1BodyKind.Chunked))]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, nameof(Http1BodyKind.UntilClose))]
    [InlineData("HTTP/1.0 200 OK\r\n\r\n", false, nameof(Http1BodyKind.UntilClose))]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, nameof(Http1BodyKind.None))]
    [InlineData("HTTP/1.1 204 No Content\r\n\r\n", false, nameof(Http1BodyKind.None))]
    [InlineData("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, nameof(Http1BodyKind.None))]
    [InlineData("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, nameof(Http1BodyKind.None))]
    public void A_response_head_is_framed_by_status_method_and_fields(string text, bool head, string kind)
    {
        using var response = new Http1ResponseHead();

        Assert.Equal(Http1ParseStatus.Complete, response.TryParse(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(text)), head));
        Assert.Equal(Enum.Parse<Http1BodyKind>(kind), response.BodyKind);
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", nameof(Http1Refusal.ContentLengthWithTransferEncoding))]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", nameof(Http1Refusal.DuplicateContentLength))]
    [InlineData("HTTP/1.1 2000 OK\r\n\r\n", nameof(Http1Refusal.InvalidStatusLine))]
    [InlineData("HTTP/2 200 OK\r\n\r\n", nameof(Http1Refusal.InvalidStatusLine))]
    [InlineData("HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n", nameof(Http1Refusal.BareLineFeed))]
    [InlineData("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", nameof(Http1Refusal.ObsFold))]
    public void An_ambiguous_response_head_is_refused(string text, string refusal)
    {
        using var response = new Http1ResponseHead();

        Assert.Equal(Http1ParseStatus.Refused, response.TryParse(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(text)), false));
        Assert.Equal(Enum.Parse<Http1Refusal>(refusal), response.Refusal);
    }

    [Fact]
    public void A_response_read_until_close_ends_only_at_the_close()
    {
        var body = new Http1Body(Http1BodyKind.UntilClose, 0, 0);
        var data = new ArrayBufferWriter<byte>();
        Assert.Equal(Http1BodyStatus.NeedMoreData, body.Read(new ReadOnlySequence<byte>("abc"u8.ToArray()), isCompleted: false, data, out _));
        Assert.Equal(Http1BodyStatus.Complete, body.Read(new ReadOnlySequence<byte>("de"u8.ToArray()), isCompleted: true, data, out _));
        Assert.Equal("abcde", Encoding.ASCII.GetString(data.WrittenSpan));
    }

    [Fact]
    public async Task A_head_that_trickles_in_is_refused_with_408_when_the_deadline_passes()
    {
        var time = new FakeTimeProvider();
        var pipe = new Pipe();
        using var reader = new Http1HeadReader(pipe.Reader, time);
        using var head = new Http1RequestHead(Http1Limits.Sidecar);

        // Inside the deadline, a head sent in two parts is read whole.
        var read = reader.ReadAsync(head, CancellationToken.None).AsTask();
        await pipe.Writer.WriteAsync("GET / HTTP/1.1\r\nHo"u8.ToArray());
        time.Advance(Http1Limits.Sidecar.HeadTimeout - TimeSpan.FromMilliseconds(1));
        await pipe.Writer.WriteAsync("st: a\r\n\r\n"u8.ToArray());
        var whole = await read.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(Http1ParseStatus.Complete, whole.Status);
        pipe.Reader.AdvanceTo(whole.Buffer.GetPosition(head.Length));

        // The next head starts its own deadline; when it passes, the read ends with the refusal.
        read = reader.ReadAsync(head, CancellationToken.None).AsTask();
        await pipe.Writer.WriteAsync("GET / HTTP/1.1\r\nHost"u8.ToArray());
        time.Advance(Http1Limits.Sidecar.HeadTimeout);
        var late = await read.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(Http1ParseStatus.Refused, late.Status);
        Assert.Equal(Http1Refusal.HeadTimeout, late.Refusal);
        Assert.Equal(408, Http1Refusals.Status(late.Refusal));
    }

    [Fact]
    public async Task A_peer_that_closes_inside_a_head_ends_the_read_without_an_answer()
    {
        var pipe = new Pipe();
        using var reader = new Http1HeadReader(pipe.Reader, new FakeTimeProvider());
        using var head = new Http1RequestHead(Http1Limits.Sidecar);
        await pipe.Writer.WriteAsync("GET / HT"u8.ToArray());
        await pipe.Writer.CompleteAsync();

        var read = await reader.ReadAsync(head, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));

        Assert.True(read.Closed);
    }

    [Fact]
    public void Parsing_a_request_and_framing_its_body_allocates_nothing()
    {
        using var head = new Http1RequestHead(Http1Limits.Sidecar);
        var length = new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(
            "POST /orders/42?expand=lines HTTP/1.1\r\nHost: orders:8080\r\nUser-Agent: load/1.0\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: 13\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n{\"name\":\"ab\"}"));
        var chunked = new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(
            "PUT /orders/42 HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
        ReadOnlySequence<byte>[] inputs = [length, chunked];
        Run(); // warm up: static lookups, JIT

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Run();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        void Run()
        {
            foreach (var input in inputs)
            {
                var body = head.TryParse(input) == Http1ParseStatus.Complete ? new Http1Body(head.BodyKind, head.ContentLength, 1024) : throw new InvalidOperationException("not parsed");
                if (body.Read(input.Slice(head.Length), isCompleted: false, null, out _) != Http1BodyStatus.Complete)
                {
                    throw new InvalidOperationException("body not framed");
                }
            }
        }
    }
}
