using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Tests.Inbound;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

/// <summary>
/// <see cref="JsonRedactionTransform"/> in the real inbound path (connection middleware, stages, YARP) between a caller
/// and a real app on Kestrel, over HTTP/1.1 and HTTP/2: the framing the caller gets when the body changes length, and
/// what is left alone.
/// </summary>
public class RedactionProxyTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private static readonly PolicyKinds Kinds = PolicyKinds.Builtin.With(RedactKind.Instance);

    private const string Config = InboundTestHost.Permissive + """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-open, namespace: shop}
        spec:
          selector: {service: orders}
          rules: [{}]
        ---
        apiVersion: security.ztm.dev/v1
        kind: Redact
        metadata: {name: users, namespace: shop}
        spec: {selector: {service: orders}}

        """;

    private const string Leaky = """{"users": [{"name": "ada", "password": "hunter2", "ssn": "123"}, {"name": "bob", "password": "pw", "ssn": "456"}], "debug": "select *"}""";

    private const string Redacted = """{"users":[{"name":"ada","ssn":"****"},{"name":"bob","ssn":"****"}]}""";

    private readonly RedactStageKind _redact = new(ResponseRedactor.Compile(
        [new RedactionRule("/users/*/password", RedactionAction.Remove), new RedactionRule("/users/*/ssn", RedactionAction.Mask)],
        """{"properties": {"users": {"items": {"properties": {"name": {}, "ssn": {}}}}}}"""));

    private InboundTestHost _host = null!;

    /// <summary>The sidecar's <c>--http1-fast-path</c>: every test here runs with it off, and again with it on.</summary>
    protected virtual bool Http1FastPath => false;

    public async Task InitializeAsync()
    {
        _host = await InboundTestHost.StartAsync(http1FastPath: Http1FastPath, extraKinds: services => services.AddSingleton<IInboundStageKind>(_redact));
        _host.Apply("v1", Config, Kinds);
    }

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public async Task Over_HTTP_1_1_a_redacted_body_goes_out_chunked_without_the_apps_Content_Length()
    {
        var (head, body) = await RawAsync("/respond?type=application/json;%20charset=utf-8&length", Leaky);

        Assert.StartsWith("HTTP/1.1 200", head, StringComparison.Ordinal);
        Assert.DoesNotContain("Content-Length:", head, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("Transfer-Encoding: chunked", head, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(Redacted, Redact.Minify(body));
        Assert.Equal([5], _redact.Counts); // 2 passwords removed, 2 SSNs masked, debug undeclared
    }

    [Fact]
    public async Task Over_HTTP_2_a_redacted_body_ends_with_the_stream_and_no_Content_Length()
    {
        using var http = new HttpClient { Timeout = Timeout };
        // Large enough for many DATA frames and many writes through the transform.
        var users = string.Join(", ", Enumerable.Range(0, 5000).Select(i => $$"""{"name": "u{{i}}", "password": "p{{i}}", "ssn": "{{i}}"}"""));
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_host.BaseAddress, "/respond?type=application/problem%2Bjson&length"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new StringContent($$"""{"users": [{{users}}]}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("x-ztm-target-port", _host.Http2AppPort.ToString(CultureInfo.InvariantCulture));

        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        // Before reading: once buffered, HttpContent reports the buffer's length as Content-Length.
        Assert.False(response.Content.Headers.NonValidated.Contains("Content-Length"));
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var parsed = JsonNode.Parse(body)!["users"]!.AsArray();
        Assert.Equal(5000, parsed.Count);
        Assert.All(parsed, user => Assert.Equal(["name", "ssn"], user!.AsObject().Select(member => member.Key)));
        Assert.All(parsed, user => Assert.Equal("****", user!["ssn"]!.GetValue<string>()));
        Assert.DoesNotContain("password", body, StringComparison.Ordinal);
        Assert.Equal([10_000], _redact.Counts);
    }

    [Theory]
    [InlineData("/respond?type=text/plain&length")] // not JSON
    [InlineData("/respond?type=application/json&status=404&length")] // a status without a redactor
    [InlineData("/respond?type=application/jsonp&length")]
    public async Task Other_responses_pass_byte_for_byte_with_their_Content_Length(string path)
    {
        var (head, body) = await RawAsync(path, Leaky);

        Assert.Contains($"Content-Length: {Encoding.UTF8.GetByteCount(Leaky)}", head, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Transfer-Encoding", head, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(Leaky, body);
        Assert.Empty(_redact.Counts);
    }

    [Fact]
    public async Task Invalid_JSON_from_the_app_ends_the_body_where_it_goes_wrong_is_counted_and_the_connection_goes_on()
    {
        using var http = new HttpClient { BaseAddress = _host.BaseAddress, Timeout = Timeout };

        using (var broken = await http.PostAsync("/respond?type=application/json", new StringContent("""{"users": [{"name": "ada"}], oops "password": "x"}""")))
        {
            Assert.Equal(HttpStatusCode.OK, broken.StatusCode);
            Assert.Equal("""{"users":[{"name":"ada"}]""", Redact.Minify(await broken.Content.ReadAsStringAsync()));
        }
        Assert.Equal(1, _redact.Invalid);

        using var next = await http.PostAsync("/respond?type=application/json", new StringContent(Leaky));
        Assert.Equal(Redacted, Redact.Minify(await next.Content.ReadAsStringAsync()));
        Assert.Equal([0, 5], _redact.Counts);
    }

    [Fact]
    public async Task The_app_is_asked_for_the_whole_body_uncompressed_when_the_response_will_be_transformed()
    {
        using var http = new HttpClient { BaseAddress = _host.BaseAddress, Timeout = Timeout };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/headers");
        request.Headers.TryAddWithoutValidation("Accept-Encoding", "gzip, br");
        request.Headers.TryAddWithoutValidation("Range", "bytes=0-9");
        request.Headers.TryAddWithoutValidation("If-Range", "\"v1\"");
        request.Headers.TryAddWithoutValidation("Accept", "application/json");

        using var response = await http.SendAsync(request);
        var seen = await response.Content.ReadAsStringAsync();

        Assert.StartsWith("path=/headers\n", seen, StringComparison.Ordinal);
        Assert.Contains("Accept: application/json\n", seen, StringComparison.Ordinal);
        Assert.DoesNotContain("Accept-Encoding", seen, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Range", seen, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>One HTTP/1.1 POST written by hand; the head as text and the body de-chunked.</summary>
    private async Task<(string Head, string Body)> RawAsync(string path, string body)
    {
        var bytes = Encoding.UTF8.GetByteCount(body);
        var answer = await _host.SendRawAsync(
            $"POST {path} HTTP/1.1\r\nHost: orders\r\nContent-Type: application/json\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n{body}", Timeout);
        var split = answer.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var head = answer[..split];
        var rest = answer[(split + 4)..];
        if (!head.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase))
        {
            return (head, rest);
        }
        var text = new StringBuilder();
        while (true)
        {
            var line = rest.IndexOf("\r\n", StringComparison.Ordinal);
            var size = int.Parse(rest[..line], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (size == 0)
            {
                Assert.Equal("0\r\n\r\n", rest); // the last chunk, and nothing after it
                return (head, text.ToString());
            }
            text.Append(rest.AsSpan(line + 2, size));
            Assert.Equal("\r\n", rest.Substring(line + 2 + size, 2));
            rest = rest[(line + 2 + size + 2)..];
        }
    }
}

/// <summary>The same with <c>--http1-fast-path</c>: HTTP/1.1 requests reach the app through the sidecar's own framing.</summary>
public sealed class RedactionProxyTestsWithHttp1FastPath : RedactionProxyTests
{
    protected override bool Http1FastPath => true;
}

/// <summary><c>kind: Redact</c>, only for these tests: ApiSpec (api-validate's) is the real way to configure redaction.</summary>
public sealed record RedactResource(ResourceMetadata Metadata, WorkloadSelector? Spec) : PolicyResource(Metadata)
{
    public override string Kind => "Redact";

    public override WorkloadSelector? Selector => Spec;
}

public sealed class RedactKind : PolicyKind<RedactResource>
{
    public static readonly RedactKind Instance = new();

    private RedactKind()
    {
    }

    public override string Name => "Redact";

    protected override RedactResource ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader) =>
        new(metadata, spec is null ? null : reader.Selector(spec));

    protected override void WriteSpec(RedactResource resource, Utf8JsonWriter json) => ResourceWriter.Selector(json, resource.Spec);

    protected override void Validate(RedactResource resource, ErrorSink errors)
    {
    }
}

/// <summary>Registers a <see cref="JsonRedactionTransform"/> (one per request) with one redactor for status 200.</summary>
internal sealed class RedactStageKind(ResponseRedactor redactor) : IInboundStageKind, IInboundStage
{
    private int _invalid;

    public ConcurrentQueue<int> Counts { get; } = new();

    public int Invalid => _invalid;

    public PolicyKind Kind => RedactKind.Instance;

    public int Order => InboundStageOrder.ResponseTransforms;

    public string Summary => "redacts status 200";

    public IInboundStage? Compile(IReadOnlyList<PolicyResource> resources, StageContext context) => resources.Count == 0 ? null : this;

    public ValueTask<StageResult> RunAsync(InboundRequest request, CancellationToken cancellation)
    {
        request.TransformResponse(new JsonRedactionTransform(status => status == 200 ? redactor : null, Counts.Enqueue, () => Interlocked.Increment(ref _invalid)));
        return ValueTask.FromResult(StageResult.Continue);
    }
}
