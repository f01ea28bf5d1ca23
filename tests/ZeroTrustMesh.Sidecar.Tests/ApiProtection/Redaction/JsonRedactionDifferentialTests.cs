using System.Text;
using System.Text.Json;
using CsCheck;
using Xunit.Abstractions;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

/// <summary>
/// The redaction that copies the input's bytes against the one that re-wrote every token (<see cref="ReserializingJsonRedaction"/>):
/// for generated bodies (whitespace anywhere, escaped names, long strings, now and then cut short or broken), rule sets
/// and response schemas, the same values are redacted, the same bodies are found invalid, and the output is the old
/// one's JSON — byte for byte once the whitespace is left out (the old output had none), or, where a member name
/// has escapes (now kept as the app wrote them), the same parsed JSON. Every split of a body into two writes, one byte
/// per write, and random cuts give the same output. Most generated members are reached by no rule (nor schema), so
/// the objects and arrays the redaction passes over without a frame are compared too, as are names matched by their
/// UTF-8 bytes (multi-byte, escaped or not) against states built from the pointers' text.
/// </summary>
public sealed class JsonRedactionDifferentialTests(ITestOutputHelper output)
{
    private static readonly string[] Names = ["a", "a", "b", "id", "password", "password", "ssn", "ssn", "users", "users", "x", "é", "日本", "a/b", "m~n", "0", "1"];

    private static readonly string[] Pointers = ["/password", "/users/*/password", "/users/*/ssn", "/*/a", "/*", "/a/*/b", "/x/0", "/x/1/id", "/a~1b", "/m~0n", "/é", "/*/*/ssn", "/1", "/0/password", "/日本/*", "/*/日本"];

    private static readonly string?[] Schemas =
    [
        null,
        """{"properties": {"a": {}, "b": {"properties": {"a": {}, "x": {}}}, "users": {"items": {"$ref": "#/$defs/user"}}, "x": {"prefixItems": [{}, {"properties": {"id": {}}}]}}, "$defs": {"user": {"properties": {"id": {}, "ssn": {}, "users": {"items": {"$ref": "#/$defs/user"}}}}}}""",
        """{"items": {"properties": {"a": {}, "password": {}}, "additionalProperties": {"properties": {"id": {}}}}}""",
        """{"patternProperties": {"^[a-b]": {"properties": {"x": false}}}, "properties": {"é": {}}}""",
    ];

    [Fact]
    public void The_byte_copying_redaction_writes_the_JSON_the_reserializing_one_wrote_however_the_body_is_cut()
    {
        var stats = new int[3]; // valid, invalid, something redacted
        Gen.Int.Sample(seed =>
        {
            var random = new Random(seed);
            var body = Body(random, out var escapes, out var longWhitespace);
            var rules = Enumerable.Range(0, random.Next(1, 5)).Select(_ => new RedactionRule(Pointers[random.Next(Pointers.Length)],
                random.Next(2) == 0 ? RedactionAction.Remove : RedactionAction.Mask)).ToList();
            var redactor = ResponseRedactor.Compile(rules, Schemas[random.Next(Schemas.Length)]);

            var reference = Reference(redactor, body);
            var whole = Redact.Written(redactor, body);
            Assert.Equal(reference.Invalid, whole.Invalid);
            Assert.Equal(reference.Redacted, whole.Redacted);
            if (!escapes)
            {
                Assert.Equal(reference.Json, Redact.Minify(whole.Json));
            }
            else if (!whole.Invalid && body.Length > 0) // an empty body stays empty
            {
                using var expected = JsonDocument.Parse(reference.Json);
                using var actual = JsonDocument.Parse(whole.Json);
                Assert.True(JsonElement.DeepEquals(expected.RootElement, actual.RootElement), $"{reference.Json} vs {whole.Json}");
            }
            Interlocked.Increment(ref stats[whole.Invalid ? 1 : 0]);
            if (whole.Redacted > 0)
            {
                Interlocked.Increment(ref stats[2]);
            }

            // Cut anywhere: into two writes at every byte (bodies up to 400 bytes, else at 40 random places), byte by byte, and at random.
            var cuts = body.Length <= 400 ? Enumerable.Range(1, Math.Max(0, body.Length - 1)) : Enumerable.Range(0, 40).Select(_ => random.Next(1, body.Length));
            foreach (var cut in cuts)
            {
                Same(whole, Split(redactor, body, [cut]), longWhitespace, body, $"cut at {cut}");
            }
            Same(whole, Redact.Written(redactor, body, 1), longWhitespace, body, "byte by byte");
            var randomCuts = Enumerable.Range(0, random.Next(1, 6)).Select(_ => random.Next(body.Length + 1)).Order().ToArray();
            Same(whole, Split(redactor, body, randomCuts), longWhitespace, body, $"cut at {string.Join(",", randomCuts)}");
        }, iter: 3000, threads: 1, print: seed => $"seed {seed}");
        output.WriteLine($"{stats[0]} valid, {stats[1]} invalid, {stats[2]} with something redacted");
        // The generator must reach every side, or the comparison proves little.
        Assert.True(stats[0] > 1000 && stats[1] > 100 && stats[2] > 500, string.Join(",", stats));
    }

    private static void Same((string Json, int Redacted, bool Invalid) whole, (string Json, int Redacted, bool Invalid) cut, bool longWhitespace, byte[] body, string how)
    {
        // More whitespace than the redaction carries from one write to the next may be cut short where a write ends.
        var same = longWhitespace ? (Redact.Minify(whole.Json), whole.Redacted, whole.Invalid) == (Redact.Minify(cut.Json), cut.Redacted, cut.Invalid) : whole == cut;
        Assert.True(same, $"{how}: {whole} vs {cut} for {Encoding.UTF8.GetString(body)}");
    }

    private static (string Json, int Redacted, bool Invalid) Split(ResponseRedactor redactor, byte[] body, int[] cuts)
    {
        using var redaction = new JsonRedaction(redactor);
        var output = new MemoryStream();
        var from = 0;
        foreach (var cut in cuts.Append(body.Length))
        {
            redaction.Write(body.AsSpan(from, cut - from));
            output.Write(redaction.Output.Span);
            redaction.TakeOutput();
            from = cut;
        }
        redaction.Complete();
        output.Write(redaction.Output.Span);
        return (Encoding.UTF8.GetString(output.ToArray()), redaction.Redacted, redaction.Invalid);
    }

    private static (string Json, int Redacted, bool Invalid) Reference(ResponseRedactor redactor, byte[] body)
    {
        using var redaction = new ReserializingJsonRedaction(redactor);
        redaction.Write(body);
        redaction.Complete();
        return (Encoding.UTF8.GetString(redaction.Output.Span), redaction.Redacted, redaction.Invalid);
    }

    /// <summary>A JSON body: mostly objects and arrays of the names above, whitespace anywhere; one in eight cut short or broken.</summary>
    private static byte[] Body(Random random, out bool escapes, out bool longWhitespace)
    {
        var json = new StringBuilder();
        var state = (Escapes: false, LongWhitespace: false);
        Value(json, random, random.Next(10) == 0 ? 0 : 4, ref state);
        escapes = state.Escapes;
        longWhitespace = state.LongWhitespace;
        var text = json.ToString();
        switch (random.Next(16))
        {
            case 0:
                text = text[..random.Next(text.Length)]; // cut short
                break;
            case 1:
                var at = random.Next(text.Length + 1);
                text = text[..at] + new[] { ",", "}", "]", ":", "x", "\"", "1 2" }[random.Next(7)] + text[at..]; // broken
                break;
            case 2:
                text += random.Next(2) == 0 ? " {}" : "]"; // something after the body
                break;
        }
        return Encoding.UTF8.GetBytes(text);
    }

    private static void Value(StringBuilder json, Random random, int depth, ref (bool Escapes, bool LongWhitespace) state)
    {
        Space(json, random, ref state);
        switch (depth == 0 ? random.Next(2, 8) : depth == 4 ? random.Next(2) : random.Next(8))
        {
            case 0:
                json.Append('{');
                var members = random.Next(5);
                for (var i = 0; i < members; i++)
                {
                    if (i > 0)
                    {
                        json.Append(',');
                    }
                    Space(json, random, ref state);
                    json.Append(Name(Names[random.Next(Names.Length)], random, ref state));
                    Space(json, random, ref state);
                    json.Append(':');
                    Value(json, random, depth - 1, ref state);
                }
                Space(json, random, ref state);
                json.Append('}');
                break;
            case 1:
                json.Append('[');
                var elements = random.Next(5);
                for (var i = 0; i < elements; i++)
                {
                    if (i > 0)
                    {
                        json.Append(',');
                    }
                    Value(json, random, depth - 1, ref state);
                }
                Space(json, random, ref state);
                json.Append(']');
                break;
            case 2:
                json.Append(new[] { "0", "-1.5e+3", "12345678901234567890", "1.0", "-0" }[random.Next(5)]);
                break;
            case 3:
                json.Append(new[] { "true", "false", "null" }[random.Next(3)]);
                break;
            case 4:
                json.Append(random.Next(50) == 0 ? "\"" + new string('s', 5000) + "\"" : "\"text \\\"q\\\" \\u00e9 é\"");
                break;
            default:
                json.Append(random.Next(2) == 0 ? "{}" : "[]");
                break;
        }
        Space(json, random, ref state);
    }

    /// <summary>A member name, sometimes with a JSON escape for one of its characters.</summary>
    private static string Name(string name, Random random, ref (bool Escapes, bool LongWhitespace) state)
    {
        var escaped = name.Replace("\\", "\\\\", StringComparison.Ordinal);
        if (random.Next(6) == 0)
        {
            state.Escapes = true;
            var i = random.Next(name.Length);
            escaped = name[..i] + $"\\u{(int)name[i]:x4}" + name[(i + 1)..];
        }
        return "\"" + escaped + "\"";
    }

    private static void Space(StringBuilder json, Random random, ref (bool Escapes, bool LongWhitespace) state)
    {
        switch (random.Next(12))
        {
            case 0:
                json.Append(' ');
                break;
            case 1:
                json.Append("\n  ");
                break;
            case 2:
                json.Append("\t\r\n");
                break;
            case 3 when random.Next(40) == 0:
                json.Append(' ', 1500);
                state.LongWhitespace = true;
                break;
        }
    }
}
