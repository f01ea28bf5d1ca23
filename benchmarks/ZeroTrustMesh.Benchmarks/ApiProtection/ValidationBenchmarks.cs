using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.ApiProtection;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Benchmarks.ApiProtection;

/// <summary>
/// ApiSpec request validation of a 4 KiB JSON body, as the sidecar's stage does it: parse with
/// <see cref="JsonDocument"/> (the stage's depth limit), evaluate with <see cref="ApiSchema"/> (JsonSchema.Net 8.0.5,
/// the schema compiled once, as the control plane ships it: the bookshop's NewOrder with <c>$defs</c>). A valid body and
/// an invalid one (errors collected). Baseline: the parse alone. Target (issue 18): at 1000 req/s, added p99 ≤ +0.2 ms
/// over the same route without validation — this measures the validation's share of it.
/// The sidecar's stage in parts (allocation per request is gen0 collections, whose pauses land in the p99): the operation
/// match, the schema evaluation of a parsed body, and the whole stage (<see cref="ApiProtectionStage"/>: match, body read
/// into the pooled buffer, parse, evaluate, count) on a request built as the inbound proxy builds it —
/// <see cref="NewRequest"/> is that request alone, to subtract (it exists with validation off too).
/// </summary>
[MemoryDiagnoser]
public class ValidationBenchmarks
{
    private const string Schema = """
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/NewOrder",
         "$defs": {
           "NewOrder": {"type": "object", "additionalProperties": false, "required": ["bookId", "quantity", "shipping", "lines"],
             "properties": {
               "bookId": {"type": "integer", "minimum": 1}, "quantity": {"type": "integer", "minimum": 1, "exclusiveMaximum": 10},
               "note": {"type": ["string", "null"], "maxLength": 200}, "shipping": {"$ref": "#/$defs/Address"},
               "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}}}},
           "Address": {"type": "object", "required": ["street", "city"], "properties": {"street": {"type": "string", "minLength": 1}, "city": {"type": "string", "minLength": 1}}},
           "Line": {"type": "object", "required": ["bookId", "quantity"], "properties": {"bookId": {"type": "integer", "minimum": 1}, "quantity": {"type": "integer", "minimum": 1}, "title": {"type": "string"}}}}}
        """;

    private static readonly JsonDocumentOptions Parsing = new() { MaxDepth = 64 };

    private ApiSchema _schema = null!;
    private byte[] _valid = null!;
    private byte[] _invalid = null!;
    private JsonDocument _parsed = null!;
    private ApiOperations _operations = null!;
    private ApiProtectionStage _stage = null!;

    [GlobalSetup]
    public void Setup()
    {
        _schema = ApiSchema.Compile(Schema);
        _valid = Body(valid: true);
        _invalid = Body(valid: false);
        if (!Validate(_valid) || Validate(_invalid))
        {
            throw new InvalidOperationException("benchmark setup: the valid body must pass and the invalid one fail");
        }
        _parsed = JsonDocument.Parse(_valid, Parsing);
        var spec = new ApiSpec(new ResourceMetadata("catalog-api", "bench"), new ApiSpecSpec(null, ApiMode.Enforce, UnknownOperations.Allow, 65536, null, [], [],
            [new ApiOperation("createOrder", "POST", "/api/orders", [], new ApiBody(true, Schema), [])]));
        _operations = new ApiOperations(spec, "bench/catalog-api");
        _stage = new ApiProtectionStage(spec, new SidecarMetrics(new IdentityState(TimeProvider.System)), NullLogger.Instance);
        if (!WholeStage())
        {
            throw new InvalidOperationException("benchmark setup: the stage must pass the valid body");
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _parsed.Dispose();

    private static byte[] Body(bool valid)
    {
        var text = new StringBuilder($$"""{"bookId": 7, "quantity": {{(valid ? 2 : 10)}}, "note": null, "shipping": {"street": "1 Main St", "city": "Springfield"}, "lines": [""");
        for (var i = 1; text.Length < 4 * 1024 - 80; i++)
        {
            text.Append(i == 1 ? "" : ", ").Append($$"""{"bookId": {{(valid || i % 7 != 0 ? i : -i)}}, "quantity": 1, "title": "Book number {{i}}"}""");
        }
        return Encoding.UTF8.GetBytes(text.Append("]}").ToString());
    }

    [Benchmark(Baseline = true)]
    public int ParseOnly()
    {
        using var document = JsonDocument.Parse(_valid, Parsing);
        return document.RootElement.GetProperty("lines").GetArrayLength();
    }

    [Benchmark]
    public bool ValidBody() => Validate(_valid);

    [Benchmark]
    public bool InvalidBodyWithErrors() => Validate(_invalid);

    [Benchmark]
    public bool MatchOperation() => _operations.Match("POST", "/api/orders").Operation is not null;

    [Benchmark]
    public bool EvaluateParsedBody() => _schema.Errors(_parsed.RootElement).Count == 0;

    [Benchmark]
    public object NewRequest() => Request().Request;

    [Benchmark]
    public bool WholeStage()
    {
        var (request, ended) = Request();
        var run = _stage.RunAsync(request, CancellationToken.None);
        if (!run.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException("the stage waited on a MemoryStream body");
        }
        var passed = run.Result.Refusal is null;
        ended.End();
        return passed;
    }

    /// <summary>A POST of the valid order as the inbound proxy hands it to the stage; <c>End</c> runs what it registered for the response's end (the pooled body returned).</summary>
    private (InboundRequest Request, EndOfResponse Ended) Request()
    {
        var http = new DefaultHttpContext();
        var ended = new EndOfResponse();
        http.Features.Set<Microsoft.AspNetCore.Http.Features.IHttpResponseFeature>(ended);
        http.Request.Method = "POST";
        http.Request.Path = "/api/orders";
        http.Request.ContentType = "application/json";
        http.Request.ContentLength = _valid.Length;
        http.Request.Body = new MemoryStream(_valid, writable: false);
        return (new InboundRequest(http, null, 8080, "/api/orders", DateTimeOffset.UnixEpoch), ended);
    }

    private sealed class EndOfResponse : Microsoft.AspNetCore.Http.Features.HttpResponseFeature
    {
        private readonly List<(Func<object, Task> Callback, object State)> _completed = new(4);

        public override void OnCompleted(Func<object, Task> callback, object state) => _completed.Add((callback, state));

        public void End()
        {
            foreach (var (callback, state) in _completed)
            {
                callback(state).GetAwaiter().GetResult();
            }
            _completed.Clear();
        }
    }

    private bool Validate(byte[] body)
    {
        using var document = JsonDocument.Parse(body, Parsing);
        return _schema.Validate(document.RootElement, body == _invalid ? [] : null);
    }
}
