using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;
using ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

namespace ZeroTrustMesh.Benchmarks.ApiProtection;

/// <summary>
/// Response redaction of a 64 KiB JSON body (a page of users in the shape of OWASP's vulnerable API apps: each with a
/// password, an SSN, an address and friends the schema does not all declare), streamed as the proxy does: 16 KiB writes
/// into <see cref="JsonRedactionTransform"/>'s stream, out to <see cref="Stream.Null"/> (and in one 64 KiB write, as YARP
/// may hand it over). Rules only (remove
/// <c>/users/*/password</c>, mask <c>/users/*/ssn</c>), and rules with the undeclared-fields mode. Baseline: reading the
/// same body once with <see cref="Utf8JsonReader"/> and writing nothing, the least a streaming JSON pass costs. Side by
/// side, in 16 KiB writes straight into the redaction (no stream): the redaction that copies the input's bytes between
/// edits, and the one before it that re-wrote every kept token through <see cref="Utf8JsonWriter"/>
/// (<see cref="ReserializingJsonRedaction"/>, the tests' reference). Target (issue 18): ≤ 0.3 ms median.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[MinColumn]
public class RedactionBenchmarks
{
    private const int WriteSize = 16 * 1024;

    private const string Schema = """
        {"type": "object",
         "properties": {"users": {"type": "array", "items": {"$ref": "#/$defs/User"}}, "page": {"type": "integer"}},
         "$defs": {
           "User": {"type": "object", "properties": {
             "id": {"type": "integer"}, "username": {"type": "string"}, "email": {"type": "string"}, "ssn": {"type": "string"},
             "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}},
             "friends": {"type": "array", "items": {"type": "object", "properties": {"id": {}, "username": {}}}}}}}}
        """;

    private static readonly RedactionRule[] Rules = [new("/users/*/password", RedactionAction.Remove), new("/users/*/ssn", RedactionAction.Mask)];

    private byte[] _body = null!;
    private ResponseRedactor _rules = null!;
    private ResponseRedactor _rulesAndSchema = null!;
    private DefaultHttpContext _context = null!;

    [GlobalSetup]
    public void Setup()
    {
        var users = new StringBuilder("{\"page\": 1, \"users\": [");
        for (var i = 0; users.Length < 64 * 1024 - 400; i++)
        {
            users.Append(i == 0 ? "" : ", ").Append($$"""
                {"id": {{i}}, "username": "user{{i}}", "email": "user{{i}}@example.com", "password": "$2b$12$abcdefghijklmnopqrstuv{{i}}",
                 "ssn": "123-45-{{i:D4}}", "admin": false, "address": {"street": "{{i}} Main St", "city": "Springfield", "lat": 39.78, "lng": -89.65},
                 "friends": [{"id": {{i + 1}}, "username": "user{{i + 1}}", "token": "t{{i}}"}]}
                """);
        }
        _body = Encoding.UTF8.GetBytes(users.Append("]}").ToString());
        _rules = ResponseRedactor.Compile(Rules, null);
        _rulesAndSchema = ResponseRedactor.Compile(Rules, Schema);
        _context = new DefaultHttpContext();
        _context.Response.ContentType = "application/json";
        if (RedactRules() == 0 || RedactRulesAndSchema() <= RedactRules())
        {
            throw new InvalidOperationException("benchmark setup: the rules must redact, and the schema must remove more");
        }
    }

    [Benchmark(Baseline = true, Description = "baseline: Utf8JsonReader over the body, nothing written")]
    public int ReadOnly()
    {
        var reader = new Utf8JsonReader(_body);
        var tokens = 0;
        while (reader.Read())
        {
            tokens++;
        }
        return tokens;
    }

    [Benchmark(Description = "redact 64 KiB: 2 pointer rules")]
    public int RedactRules() => Redact(_rules);

    [Benchmark(Description = "redact 64 KiB: 2 pointer rules + undeclared fields (schema)")]
    public int RedactRulesAndSchema() => Redact(_rulesAndSchema);

    /// <summary>YARP hands the app's body over in writes of up to 64 KiB: the whole page in one write.</summary>
    [Benchmark(Description = "redact 64 KiB in one write: 2 pointer rules")]
    public int RedactRulesOneWrite() => Redact(_rules, _body.Length);

    [Benchmark(Description = "redaction alone, copying: 2 pointer rules")]
    public int CopyingRules()
    {
        using var redaction = new JsonRedaction(_rules);
        for (var offset = 0; offset < _body.Length; offset += WriteSize)
        {
            redaction.Write(_body.AsSpan(offset, Math.Min(WriteSize, _body.Length - offset)));
            Stream.Null.Write(redaction.Output.Span);
            redaction.TakeOutput();
        }
        redaction.Complete();
        Stream.Null.Write(redaction.Output.Span);
        return redaction.Redacted;
    }

    [Benchmark(Description = "redaction alone, copying: 2 pointer rules + undeclared fields")]
    public int CopyingRulesAndSchema()
    {
        using var redaction = new JsonRedaction(_rulesAndSchema);
        for (var offset = 0; offset < _body.Length; offset += WriteSize)
        {
            redaction.Write(_body.AsSpan(offset, Math.Min(WriteSize, _body.Length - offset)));
            Stream.Null.Write(redaction.Output.Span);
            redaction.TakeOutput();
        }
        redaction.Complete();
        Stream.Null.Write(redaction.Output.Span);
        return redaction.Redacted;
    }

    [Benchmark(Description = "redaction alone, before (Utf8JsonWriter): 2 pointer rules")]
    public int ReserializingRules() => Reserialize(_rules);

    [Benchmark(Description = "redaction alone, before (Utf8JsonWriter): 2 pointer rules + undeclared fields")]
    public int ReserializingRulesAndSchema() => Reserialize(_rulesAndSchema);

    private int Reserialize(ResponseRedactor redactor)
    {
        using var redaction = new ReserializingJsonRedaction(redactor);
        for (var offset = 0; offset < _body.Length; offset += WriteSize)
        {
            redaction.Write(_body.AsSpan(offset, Math.Min(WriteSize, _body.Length - offset)));
            Stream.Null.Write(redaction.Output.Span);
            redaction.TakeOutput();
        }
        redaction.Complete();
        Stream.Null.Write(redaction.Output.Span);
        return redaction.Redacted;
    }

    private int Redact(ResponseRedactor redactor, int writeSize = WriteSize)
    {
        var count = 0;
        var transform = new JsonRedactionTransform(_ => redactor, n => count = n);
        if (!transform.Applies(_context.Response))
        {
            throw new InvalidOperationException("the transform must apply to a JSON response");
        }
        using (var stream = transform.Wrap(Stream.Null))
        {
            for (var offset = 0; offset < _body.Length; offset += writeSize)
            {
                stream.Write(_body, offset, Math.Min(writeSize, _body.Length - offset));
            }
        }
        return count;
    }
}
