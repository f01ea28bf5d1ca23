using System.Text.Json.Serialization;

namespace ZeroTrustMesh.DemoApp;

/// <summary>What the HTTP echo replies: the request as the app saw it, after the sidecars.</summary>
internal sealed record EchoResponse(
    string App,
    string Method,
    string Path,
    string Query,
    string Protocol,
    Dictionary<string, string> Headers,
    string? Caller,
    long BodyBytes);

[JsonSerializable(typeof(EchoResponse))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class DemoJson : JsonSerializerContext;
