using System.Text;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;
using static ZeroTrustMesh.Sidecar.ApiProtection.Redaction.RedactionAction;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

/// <summary>The body as it streams: cut anywhere, huge, deep, or not JSON at all.</summary>
public sealed class JsonRedactionStreamingTests
{
    private const string Document = """
        {"users": [{"name": "ada \"the\" first", "ssn": "123-45-6789", "tags": ["a", "b\u00e9"], "score": -1.25e+3},
                   {"name": "bob", "ssn": {"masked": false}, "tags": [], "score": 12345678901234567890}],
         "token": "eyJhbGciOi", "meta": {"page": 1, "a/b": null, "nested": [[{"ssn": 1}]]}}
        """;

    [Fact]
    public void The_output_is_the_same_wherever_the_writes_cut_the_body()
    {
        var redactor = Redact.Schema(
            """{"properties": {"users": {"items": {"properties": {"name": {}, "tags": {}, "score": {}, "ssn": {}}}}, "token": {}, "meta": {}}}""",
            ("/users/*/ssn", Mask), ("/token", Remove), ("/meta/nested/*/*/ssn", Remove));
        var whole = Redact.Written(redactor, Encoding.UTF8.GetBytes(Document));
        Assert.Equal(
            """{"users":[{"name":"ada \"the\" first","ssn":"****","tags":["a","b\u00e9"],"score":-1.25e+3},{"name":"bob","ssn":"****","tags":[],"score":12345678901234567890}],"meta":{"page":1,"a/b":null,"nested":[[{}]]}}""",
            Redact.Minify(whole.Json));
        Assert.Equal(4, whole.Redacted);

        var bytes = Encoding.UTF8.GetBytes(Document);
        for (var cut = 1; cut < bytes.Length; cut++)
        {
            using var redaction = new JsonRedaction(redactor);
            var output = new MemoryStream();
            redaction.Write(bytes.AsSpan(0, cut));
            output.Write(redaction.Output.Span);
            redaction.TakeOutput();
            redaction.Write(bytes.AsSpan(cut));
            redaction.Complete();
            output.Write(redaction.Output.Span);
            Assert.Equal(whole.Json, Encoding.UTF8.GetString(output.ToArray()));
            Assert.Equal(whole.Redacted, redaction.Redacted);
        }
        foreach (var chunk in new[] { 1, 2, 3, 7, 64 })
        {
            Assert.Equal(whole, Redact.Written(redactor, bytes, chunk));
        }
    }

    [Fact]
    public void A_string_longer_than_any_write_is_carried_until_it_ends_and_kept_exactly()
    {
        var redactor = Redact.Rules(("/secret", Remove));
        var big = new string('x', 300_000) + "\\n\\u00e9";
        var json = $$"""{"secret": "{{big}}", "kept": "{{big}}"}""";

        var result = Redact.Body(redactor, json, 4096);

        Assert.False(result.Invalid);
        Assert.Equal($$"""{"kept":"{{big}}"}""", result.Json);
        Assert.Equal(1, result.Redacted);
    }

    [Fact]
    public void A_64_MiB_array_of_objects_streams_through_with_bounded_allocation()
    {
        var redactor = Redact.Schema("""{"items": {"properties": {"id": {}, "name": {}, "tags": {}}}}""", ("/*/name", Mask));
        // The elements run on from one 64 KiB write to the next and do not divide it, so writes end inside tokens.
        var element = Encoding.UTF8.GetBytes(Element + ",");
        const int Write = 64 * 1024;
        const int Writes = 1024; // 64 MiB
        var pattern = new byte[Write + element.Length];
        for (var i = 0; i < pattern.Length; i++)
        {
            pattern[i] = element[i % element.Length];
        }
        var elements = (long)Writes * Write / element.Length;
        var cut = (int)((long)Writes * Write % element.Length);
        var tail = Encoding.UTF8.GetBytes(Element[cut..] + "]"); // the last element, finished (or whole), and the end of the array
        var sink = new CountingStream();

        // Warm up (the pool's arrays, the writer's first buffers) with one run, then measure a second.
        Run();
        var before = GC.GetAllocatedBytesForCurrentThread();
        var (redacted, invalid) = Run();
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.False(invalid);
        Assert.Equal(2 * (elements + 1), (long)redacted); // name masked and password removed, in every element and the closing one
        var redactedElement = """{"id": 123456, "name": "****", "tags": ["a", "b"]}""".Length; // the app's whitespace kept
        Assert.Equal(2 + ((elements + 1) * (redactedElement + 1)) - 1, sink.Bytes); // [ elements joined with commas ]
        Assert.True(allocated < 64 * 1024, $"{allocated} bytes allocated for a 64 MiB body");

        (int, bool) Run()
        {
            sink.Bytes = 0;
            using var redaction = new JsonRedaction(redactor);
            redaction.Write("["u8);
            for (var i = 0; i < Writes; i++)
            {
                redaction.Write(pattern.AsSpan((int)((long)i * Write % element.Length), Write));
                sink.Write(redaction.Output.Span);
                redaction.TakeOutput();
            }
            redaction.Write(tail);
            redaction.Complete();
            sink.Write(redaction.Output.Span);
            return (redaction.Redacted, redaction.Invalid);
        }
    }

    private const string Element = """{"id": 123456, "name": "user name \"quoted\"", "password": "hunter2", "tags": ["a", "b"]}""";

    [Theory]
    [InlineData(1_000)]
    [InlineData(1_001)]
    [InlineData(JsonRedaction.MaxDepth - 2)]
    public void Deep_nesting_streams_without_recursion_and_rules_still_match_at_the_bottom(int depth)
    {
        var path = string.Concat(Enumerable.Repeat("/*", depth)) + "/secret";
        var redactor = Redact.Rules((path, Remove));
        var json = new StringBuilder();
        for (var i = 0; i < depth; i++)
        {
            json.Append(i % 2 == 0 ? "{\"o\":" : "[");
        }
        // At the bottom an object when the innermost container is an array, keeping the alternation.
        json.Append(depth % 2 == 0 ? "{\"secret\":1,\"kept\":2}" : "1");
        for (var i = depth - 1; i >= 0; i--)
        {
            json.Append(i % 2 == 0 ? "}" : "]");
        }

        var result = Redact.Body(redactor, json.ToString(), 4096);

        Assert.False(result.Invalid);
        Assert.Equal(json.ToString().Replace("\"secret\":1,", "", StringComparison.Ordinal), result.Json);
        Assert.Equal(depth % 2 == 0 ? 1 : 0, result.Redacted);
    }

    [Fact]
    public void Nesting_deeper_than_the_limit_ends_the_body_as_invalid_without_a_crash()
    {
        var depth = JsonRedaction.MaxDepth + 10;
        var json = new string('[', depth) + new string(']', depth);

        var result = Redact.Body(Redact.Rules(("/x", Remove)), json, 512);

        Assert.True(result.Invalid);
        Assert.True(result.Json.Length < JsonRedaction.MaxDepth + 1);
        Assert.DoesNotContain("]", result.Json, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"a\": 1, \"password\": \"x", """{"a":1""")] // truncated
    [InlineData("""{"a": 1, "b": tru, "password": "x"}""", """{"a":1,"b":""")]
    [InlineData("""{"a": 1} {"password": "x"}""", """{"a":1}""")] // a second value after the body
    [InlineData("""{"a": [1, 2,], "password": "x"}""", """{"a":[1,2""")]
    [InlineData("""{"a": 1, /* note */ "password": "x"}""", """{"a":1""")]
    [InlineData("""{'a': 1}""", "{")]
    [InlineData("not json at all, password=x", "")]
    [InlineData(" ", "")]
    public void Invalid_JSON_ends_the_body_where_it_goes_wrong_and_nothing_after_is_passed_on(string body, string written)
    {
        var redactor = Redact.Rules(("/password", Remove));

        foreach (var chunk in new[] { int.MaxValue, 1, 5 })
        {
            var result = Redact.Body(redactor, body, chunk);

            Assert.True(result.Invalid);
            Assert.Equal(written, result.Json);
        }
    }

    [Fact]
    public void Invalid_UTF8_in_a_member_name_is_invalid_JSON_and_in_a_kept_string_passes_as_it_came()
    {
        var redactor = Redact.Rules(("/x", Remove));
        byte[] badName = [.. "{\"a\":1,\""u8, 0xC3, 0x28, .. "\":2}"u8];
        byte[] badValue = [.. "{\"a\":\""u8, 0xFF, .. "\"}"u8];

        var name = Redact.Body(redactor, badName);
        var value = Redact.Body(redactor, badValue);

        Assert.True(name.Invalid);
        Assert.Equal("{\"a\":1", name.Json);
        Assert.False(value.Invalid, "the reader accepts it");
        Assert.Equal(Encoding.UTF8.GetString(badValue), value.Json);
    }

    /// <summary>
    /// An object no rule reaches inside (here <c>/meta</c>, with the rule <c>/password</c>) is passed over without a
    /// frame, yet its member names are still checked: raw bytes that are not UTF-8, or an escaped lone surrogate, end the
    /// body there. A body of ASCII skips the check of names without escapes, so each case is also run with an
    /// <c>é</c> before it; and cut into writes of 1 and 5 bytes.
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void A_name_that_is_not_UTF8_is_invalid_JSON_also_inside_an_object_no_rule_reaches(bool escaped, bool nonAscii)
    {
        var redactor = Redact.Rules(("/password", Remove));
        byte[] badName = escaped ? [.. "\\ud800"u8] : [0xC3, 0x28];
        byte[] before = nonAscii ? [.. "{\"password\": 1, \"b\": \"\u00e9\", \"meta\": {\"a\": [1], \""u8] : [.. "{\"password\": 1, \"meta\": {\"a\": [1], \""u8];
        byte[] body = [.. before, .. badName, .. "\": 2}, \"c\": 3}"u8];
        var written = nonAscii ? "{\"b\":\"\u00e9\",\"meta\":{\"a\":[1]" : "{\"meta\":{\"a\":[1]";

        foreach (var chunk in new[] { int.MaxValue, 1, 5 })
        {
            var result = Redact.Body(redactor, body, chunk);

            Assert.True(result.Invalid, $"writes of {chunk}");
            Assert.Equal(written, result.Json);
        }
    }

    [Fact]
    public void An_empty_body_is_not_an_error_and_a_byte_order_mark_is_dropped()
    {
        var redactor = Redact.Rules(("/password", Remove));

        Assert.Equal(("", 0, false), Redact.Body(redactor, ""));
        Assert.Equal(("""{"a":1}""", 1, false), Redact.Body(redactor, [0xEF, 0xBB, 0xBF, .. """{"a": 1, "password": 2}"""u8]));
    }

    [Fact]
    public void One_compiled_redactor_serves_many_responses_at_once()
    {
        var redactor = Redact.Schema("""{"items": {"properties": {"id": {}, "n": {}}}}""", ("/*/n", Mask));
        var json = "[" + string.Join(",", Enumerable.Range(0, 2000).Select(i => $$"""{"id": {{i}}, "n": "x", "secret": {{i}}}""")) + "]";
        var expected = "[" + string.Join(",", Enumerable.Range(0, 2000).Select(i => $$"""{"id":{{i}},"n":"****"}""")) + "]";

        Parallel.For(0, 32, i =>
        {
            var result = Redact.Body(redactor, json, 97 + i);
            Assert.Equal(expected, result.Json);
            Assert.Equal(4000, result.Redacted);
        });
    }

    private sealed class CountingStream : Stream
    {
        public long Bytes { get; set; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => Bytes;

        public override long Position { get => Bytes; set => throw new NotSupportedException(); }

        public override void Write(ReadOnlySpan<byte> buffer) => Bytes += buffer.Length;

        public override void Write(byte[] buffer, int offset, int count) => Bytes += count;

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
