namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>
/// Why the HTTP/1.1 framing refused a message. Each is a class of input two parsers could read differently (request
/// smuggling) or a limit; <see cref="Http1Refusals"/> gives the status Kestrel answers with and a readable reason.
/// </summary>
internal enum Http1Refusal : byte
{
    None,
    InvalidRequestLine,
    InvalidMethod,
    InvalidTarget,
    OptionsMethodRequired,
    UnsupportedVersion,
    BareLineFeed,
    ObsFold,
    InvalidHeaderName,
    InvalidHeaderValue,
    RequestLineTooLong,
    HeadTooLarge,
    TooManyHeaders,
    MissingHost,
    DuplicateHost,
    InvalidHost,
    InvalidContentLength,
    DuplicateContentLength,
    ContentLengthWithTransferEncoding,
    FinalCodingNotChunked,
    LengthRequired,
    InvalidChunkSize,
    InvalidChunkExtension,
    InvalidChunkSuffix,
    InvalidTrailer,
    HeadTimeout,
    InvalidStatusLine,
}

internal static class Http1Refusals
{
    /// <summary>The status Kestrel answers the same refusal with (the fast path answers alike).</summary>
    public static int Status(Http1Refusal refusal) => refusal switch
    {
        Http1Refusal.None => 200,
        Http1Refusal.RequestLineTooLong => 414,
        Http1Refusal.HeadTooLarge or Http1Refusal.TooManyHeaders => 431,
        Http1Refusal.UnsupportedVersion => 505,
        Http1Refusal.OptionsMethodRequired => 405,
        Http1Refusal.HeadTimeout => 408,
        Http1Refusal.InvalidStatusLine => 502,
        _ => 400,
    };

    public static string Reason(Http1Refusal refusal) => refusal switch
    {
        Http1Refusal.None => "",
        Http1Refusal.InvalidRequestLine => "invalid request line",
        Http1Refusal.InvalidMethod => "invalid method",
        Http1Refusal.InvalidTarget => "invalid request target",
        Http1Refusal.UnsupportedVersion => "HTTP version not supported",
        Http1Refusal.OptionsMethodRequired => "the target * is for OPTIONS only",
        Http1Refusal.BareLineFeed => "a line ends in LF without CR",
        Http1Refusal.ObsFold => "a header line is folded (obs-fold)",
        Http1Refusal.InvalidHeaderName => "invalid header name",
        Http1Refusal.InvalidHeaderValue => "invalid header value",
        Http1Refusal.RequestLineTooLong => "request line too long",
        Http1Refusal.HeadTooLarge => "request headers too large",
        Http1Refusal.TooManyHeaders => "too many request headers",
        Http1Refusal.MissingHost => "HTTP/1.1 request without Host",
        Http1Refusal.DuplicateHost => "more than one Host header",
        Http1Refusal.InvalidHost => "invalid Host header",
        Http1Refusal.InvalidContentLength => "invalid Content-Length",
        Http1Refusal.DuplicateContentLength => "more than one Content-Length",
        Http1Refusal.ContentLengthWithTransferEncoding => "the request has both Content-Length and Transfer-Encoding",
        Http1Refusal.FinalCodingNotChunked => "the final transfer coding is not chunked",
        Http1Refusal.LengthRequired => "an HTTP/1.0 POST or PUT without Content-Length",
        Http1Refusal.InvalidChunkSize => "invalid chunk size",
        Http1Refusal.InvalidChunkExtension => "invalid chunk extension",
        Http1Refusal.InvalidChunkSuffix => "chunk data not followed by CRLF",
        Http1Refusal.InvalidTrailer => "invalid trailer",
        Http1Refusal.HeadTimeout => "request headers not received in time",
        Http1Refusal.InvalidStatusLine => "invalid status line from the app",
        _ => refusal.ToString(),
    };
}
