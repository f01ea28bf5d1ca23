using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.Json;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// The claims of a JWT's payload as request values: a string claim is one value, an array claim one value per element,
/// numbers and booleans their JSON text. Decoding only: whoever passes these to the authorizer has validated the token
/// (the sidecar), or says it has not (<c>ztmctl policy test</c>, which evaluates a hypothetical request).
/// </summary>
public sealed class JwtClaims : IRequestValues
{
    private readonly JsonElement _payload;

    private JwtClaims(JsonElement payload) => _payload = payload;

    /// <exception cref="FormatException">Not a JWT (three base64url parts with a JSON object payload).</exception>
    public static JwtClaims Decode(string jwt)
    {
        var parts = jwt.Split('.');
        if (parts.Length != 3)
        {
            throw new FormatException("a JWT has three dot-separated parts");
        }
        try
        {
            var json = Encoding.UTF8.GetString(Base64UrlDecode(parts[1]));
            using var document = JsonDocument.Parse(json);
            return document.RootElement.ValueKind == JsonValueKind.Object
                ? new JwtClaims(document.RootElement.Clone())
                : throw new FormatException("the JWT payload is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new FormatException($"the JWT payload is not JSON: {e.Message}", e);
        }
    }

    public bool TryGetValue(string name, int index, [NotNullWhen(true)] out string? value)
    {
        value = null;
        if (!_payload.TryGetProperty(name, out var claim))
        {
            return false;
        }
        if (claim.ValueKind == JsonValueKind.Array)
        {
            if (index >= claim.GetArrayLength())
            {
                return false;
            }
            claim = claim[index];
        }
        else if (index > 0)
        {
            return false;
        }
        value = claim.ValueKind == JsonValueKind.String ? claim.GetString()! : claim.GetRawText();
        return true;
    }

    private static byte[] Base64UrlDecode(string text)
    {
        var padded = text.Replace('-', '+').Replace('_', '/');
        padded += (padded.Length % 4) switch { 2 => "==", 3 => "=", 0 => "", _ => throw new FormatException("bad base64url length") };
        return Convert.FromBase64String(padded);
    }
}
