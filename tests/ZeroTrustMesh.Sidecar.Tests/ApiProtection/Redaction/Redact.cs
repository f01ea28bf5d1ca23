using System.Text;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

/// <summary>Runs one body through a <see cref="JsonRedaction"/>, in writes of <c>chunk</c> bytes, as the proxy streams it.</summary>
internal static class Redact
{
    public static (string Json, int Redacted, bool Invalid) Body(ResponseRedactor redactor, string json, int chunk = int.MaxValue) =>
        Body(redactor, Encoding.UTF8.GetBytes(json), chunk);

    public static (string Json, int Redacted, bool Invalid) Body(ResponseRedactor redactor, byte[] json, int chunk = int.MaxValue)
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

    public static ResponseRedactor Rules(params (string Pointer, RedactionAction Action)[] rules) =>
        ResponseRedactor.Compile([.. rules.Select(r => new RedactionRule(r.Pointer, r.Action))], null);

    public static ResponseRedactor Schema(string schema, params (string Pointer, RedactionAction Action)[] rules) =>
        ResponseRedactor.Compile([.. rules.Select(r => new RedactionRule(r.Pointer, r.Action))], schema);

    /// <summary>The redacted JSON, checked to be the same however the body is cut into writes (whole, and one byte at a time).</summary>
    public static string Json(ResponseRedactor redactor, string json)
    {
        var whole = Body(redactor, json);
        Assert.False(whole.Invalid, $"valid JSON was found invalid: {json}");
        var bytewise = Body(redactor, json, 1);
        Assert.Equal(whole, bytewise);
        return whole.Json;
    }
}
