namespace ZeroTrustMesh.Sidecar;

/// <summary>
/// Requests whose framing two parsers could read differently, refused on both listeners before anything is forwarded:
/// HTTP/1.x with both Transfer-Encoding and Content-Length (request smuggling: Kestrel would go by Transfer-Encoding and
/// move Content-Length to X-Content-Length), and HTTP/2 or HTTP/3 with a connection-specific header, which RFC 9113
/// §8.2.2 (RFC 9114 §4.2) makes malformed — forwarded to an HTTP/1.1 app, <c>transfer-encoding: chunked</c> would frame
/// the body a second way.
/// </summary>
internal static class RequestFraming
{
    private static readonly string[] ConnectionSpecific = ["Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "Upgrade"];

    /// <summary>Why the request is refused (400, and the connection closed), or null when its framing is sound.</summary>
    public static string? Problem(HttpRequest request)
    {
        var headers = request.Headers;
        if (HttpProtocol.IsHttp11(request.Protocol) || HttpProtocol.IsHttp10(request.Protocol))
        {
            return headers.ContainsKey("Transfer-Encoding") && (headers.ContainsKey("Content-Length") || headers.ContainsKey("X-Content-Length"))
                ? "the request has both Content-Length and Transfer-Encoding"
                : null;
        }
        foreach (var name in ConnectionSpecific)
        {
            if (headers.ContainsKey(name))
            {
                return $"malformed {request.Protocol} request: the connection-specific header '{name.ToLowerInvariant()}' is not allowed (RFC 9113 §8.2.2)";
            }
        }
        // "te" is allowed with the one value "trailers" (gRPC sends it).
        return headers.TryGetValue("TE", out var te) && !(te.Count == 1 && string.Equals(te[0], "trailers", StringComparison.OrdinalIgnoreCase))
            ? $"malformed {request.Protocol} request: 'te' may only be 'trailers' (RFC 9113 §8.2.2)"
            : null;
    }
}
