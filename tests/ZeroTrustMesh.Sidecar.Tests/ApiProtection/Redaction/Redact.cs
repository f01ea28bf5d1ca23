using System.Text;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

/// <summary>Runs one body through a <see cref="JsonRedaction"/>, in writes of <c>chunk</c> bytes, as the proxy streams it.</summary>
internal static class Redact
{
    /// <summary>The redacted body as written (the app's whitespace kept).</summary>
    public static (string Json, int Redacted, bool Invalid) Written(ResponseRedactor redactor, byte[] json, int chunk = int.MaxValue)
    {
        using var redaction = new JsonRedaction(redactor);
        var output = new MemoryStream();
        for (var offset = 0; offset < json.Length; offset += chunk)
        {
            redaction.Write(json.AsSpan(offset, Math.Min(chunk, json.Length - offset)));
            output.Write(redaction.Output.Span);
            redaction.TakeOutput();
        }
        redaction.Complete();
        output.Write(redaction.Output.Span);
        return (Encoding.UTF8.GetString(output.ToArray()), redaction.Redacted, redaction.Invalid);
    }

    /// <summary>The redacted body with the whitespace between its tokens left out (<see cref="Minify"/>), to compare with an expected text.</summary>
    public static (string Json, int Redacted, bool Invalid) Body(ResponseRedactor redactor, string json, int chunk = int.MaxValue) =>
        Body(redactor, Encoding.UTF8.GetBytes(json), chunk);

    public static (string Json, int Redacted, bool Invalid) Body(ResponseRedactor redactor, byte[] json, int chunk = int.MaxValue)
    {
        var written = Written(redactor, json, chunk);
        return (Minify(written.Json), written.Redacted, written.Invalid);
    }

    public static ResponseRedactor Rules(params (string Pointer, RedactionAction Action)[] rules) =>
        ResponseRedactor.Compile([.. rules.Select(r => new RedactionRule(r.Pointer, r.Action))], null);

    public static ResponseRedactor Schema(string schema, params (string Pointer, RedactionAction Action)[] rules) =>
        ResponseRedactor.Compile([.. rules.Select(r => new RedactionRule(r.Pointer, r.Action))], schema);

    /// <summary>
    /// The redacted JSON, minified; checked to be written byte for byte the same however the body is cut into writes
    /// (whole, and one byte at a time).
    /// </summary>
    public static string Json(ResponseRedactor redactor, string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var whole = Written(redactor, bytes);
        Assert.False(whole.Invalid, $"valid JSON was found invalid: {json}");
        var bytewise = Written(redactor, bytes, 1);
        Assert.Equal(whole, bytewise);
        return Minify(whole.Json);
    }

    /// <summary>JSON text (or the start of it) without the whitespace between tokens; strings are left exactly as they are.</summary>
    public static string Minify(string json)
    {
        var minified = new StringBuilder(json.Length);
        var inString = false;
        for (var i = 0; i < json.Length; i++)
        {
            var c = json[i];
            if (inString)
            {
                minified.Append(c);
                if (c == '\\' && i + 1 < json.Length)
                {
                    minified.Append(json[++i]);
                }
                else if (c == '"')
                {
                    inString = false;
                }
            }
            else if (c is not (' ' or '\t' or '\r' or '\n'))
            {
                minified.Append(c);
                inString = c == '"';
            }
        }
        return minified.ToString();
    }
}
