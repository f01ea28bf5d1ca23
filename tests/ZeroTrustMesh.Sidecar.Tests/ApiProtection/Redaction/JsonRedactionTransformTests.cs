using System.Text;
using Microsoft.AspNetCore.Http;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

/// <summary>When the transform applies, and what its stream reports.</summary>
public sealed class JsonRedactionTransformTests
{
    private static readonly ResponseRedactor Passwords = Redact.Rules(("/password", RedactionAction.Remove));

    [Theory]
    [InlineData("application/json", true)]
    [InlineData("Application/JSON; charset=utf-8", true)]
    [InlineData("application/json;charset=iso-8859-1", true)]
    [InlineData("application/problem+json", true)]
    [InlineData("application/vnd.api+json; ext=x", true)]
    [InlineData(" application/json ", true)]
    [InlineData("text/plain", false)]
    [InlineData("application/jsonp", false)]
    [InlineData("application/json-seq", false)]
    [InlineData("text/html; note=+json", false)]
    [InlineData("+json", false)]
    [InlineData("", false)]
    [InlineData(null, false)]
    public void A_JSON_content_type_is_application_json_or_a_json_suffix_whatever_its_parameters(string? contentType, bool json) =>
        Assert.Equal(json, JsonRedactionTransform.IsJson(contentType));

    [Fact]
    public void It_applies_only_to_a_JSON_response_with_a_body_whose_status_has_a_redactor()
    {
        var transform = new JsonRedactionTransform(status => status == 200 ? Passwords : null, _ => { });

        Assert.True(transform.Applies(Response(200, "application/json")));
        Assert.False(transform.Applies(Response(201, "application/json")));
        Assert.False(transform.Applies(Response(200, "text/plain")));
        Assert.False(transform.Applies(Response(200, null)));
        Assert.False(transform.Applies(Response(200, "application/json", HttpMethods.Head)));
        Assert.Throws<InvalidOperationException>(() => transform.Wrap(Stream.Null));
    }

    [Fact]
    public async Task The_stream_writes_the_redacted_body_and_reports_once_when_disposed()
    {
        var counts = new List<int>();
        var invalid = 0;
        var transform = new JsonRedactionTransform(_ => Passwords, counts.Add, () => invalid++);
        Assert.True(transform.Applies(Response(200, "application/json")));
        var downstream = new MemoryStream();

        var stream = transform.Wrap(downstream);
        await stream.WriteAsync(Encoding.UTF8.GetBytes("""{"name": "ada", "pass"""));
        await stream.FlushAsync();
        Assert.Equal("{\"name\":\"ada\"", Redact.Minify(Encoding.UTF8.GetString(downstream.ToArray()))); // complete tokens go out at once
        await stream.WriteAsync(Encoding.UTF8.GetBytes("""word": "x", "id": 7}"""));
        Assert.Empty(counts);
        await stream.DisposeAsync();
        await stream.DisposeAsync();
        stream.Dispose();

        Assert.Equal("""{"name":"ada","id":7}""", Redact.Minify(Encoding.UTF8.GetString(downstream.ToArray())));
        Assert.Equal([1], counts);
        Assert.Equal(0, invalid);
    }

    [Fact]
    public void Invalid_JSON_is_reported_once_and_synchronous_writes_work_too()
    {
        var counts = new List<int>();
        var invalid = 0;
        var transform = new JsonRedactionTransform(_ => Passwords, counts.Add, () => invalid++);
        Assert.True(transform.Applies(Response(200, "application/json")));
        var downstream = new MemoryStream();

        using (var stream = transform.Wrap(downstream))
        {
            stream.Write(Encoding.UTF8.GetBytes("""{"password": 1, "a": [1, 2"""));
        }

        Assert.Equal("""{"a":[1""", Redact.Minify(Encoding.UTF8.GetString(downstream.ToArray()))); // the reader gives up at the cut-off "2"
        Assert.Equal([1], counts);
        Assert.Equal(1, invalid);
    }

    [Fact]
    public async Task A_caller_gone_before_the_end_of_the_body_is_not_an_error_of_the_transform()
    {
        var counts = new List<int>();
        var transform = new JsonRedactionTransform(_ => Passwords, counts.Add);
        Assert.True(transform.Applies(Response(200, "application/json")));
        var downstream = new GoingStream();
        var stream = transform.Wrap(downstream);

        await stream.WriteAsync(Encoding.UTF8.GetBytes("""{"password": 1, "n": 12"""));
        downstream.Gone = true;
        await stream.DisposeAsync(); // "12}" was held until the end (a number may go on), which now has nowhere to go

        Assert.Equal("""{"n":""", Redact.Minify(Encoding.UTF8.GetString(downstream.ToArray())));
        Assert.Equal([1], counts);
    }

    /// <summary>
    /// What a response holds must not grow with the size of the proxy's writes: a 4 MiB body handed over in one write
    /// goes out in pieces near <see cref="JsonRedactionTransform.SliceBytes"/>, so the redaction never buffers (nor
    /// rents) more than about one slice of output. Taken whole, the one write came out as one ~4 MiB write.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_large_write_goes_through_in_slices_so_a_response_holds_about_one_slice(bool async)
    {
        var counts = new List<int>();
        var everyPassword = Redact.Rules(("/*/password", RedactionAction.Remove)); // the body is an array of objects
        var transform = new JsonRedactionTransform(_ => everyPassword, counts.Add);
        Assert.True(transform.Applies(Response(200, "application/json")));
        var element = """{"id": 1, "password": "hunter2", "name": "user"}""";
        var elements = 4 * 1024 * 1024 / (element.Length + 1);
        var body = Encoding.UTF8.GetBytes("[" + string.Join(",", Enumerable.Repeat(element, elements)) + "]");
        var downstream = new WriteSizes();

        var stream = transform.Wrap(downstream);
        if (async)
        {
            await stream.WriteAsync(body);
            await stream.DisposeAsync();
        }
        else
        {
            stream.Write(body);
            stream.Dispose();
        }

        Assert.Equal([elements], counts);
        Assert.Equal("[" + string.Join(",", Enumerable.Repeat("""{"id":1,"name":"user"}""", elements)) + "]", Redact.Minify(Encoding.UTF8.GetString(downstream.ToArray())));
        Assert.True(downstream.Writes > body.Length / JsonRedactionTransform.SliceBytes / 2, $"{downstream.Writes} writes");
        Assert.InRange(downstream.Largest, 1, JsonRedactionTransform.SliceBytes);
    }

    private static HttpResponse Response(int status, string? contentType, string method = "GET")
    {
        var context = new DefaultHttpContext();
        context.Request.Method = method;
        context.Response.StatusCode = status;
        context.Response.ContentType = contentType;
        return context.Response;
    }

    /// <summary>A response body whose client goes away: once <see cref="Gone"/>, every write fails as Kestrel's do then.</summary>
    private sealed class GoingStream : MemoryStream
    {
        public bool Gone { get; set; }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            Gone ? ValueTask.FromException(new IOException("The client reset the request stream.")) : base.WriteAsync(buffer, cancellationToken);
    }

    /// <summary>Keeps what is written and the size of the largest single write.</summary>
    /// <summary>Records the size of every write. Each override stores through MemoryStream's array write: its span
    /// write, on a subclass, goes through Stream's, which calls the array write again (endless recursion).</summary>
    private sealed class WriteSizes : MemoryStream
    {
        public int Largest { get; private set; }

        public int Writes { get; private set; }

        public override void Write(ReadOnlySpan<byte> buffer) => Store(buffer.ToArray(), 0, buffer.Length);

        public override void Write(byte[] buffer, int offset, int count) => Store(buffer, offset, count);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Store(buffer.ToArray(), 0, buffer.Length);
            return ValueTask.CompletedTask;
        }

        private void Store(byte[] buffer, int offset, int count)
        {
            Largest = Math.Max(Largest, count);
            Writes++;
            base.Write(buffer, offset, count);
        }
    }
}
