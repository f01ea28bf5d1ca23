namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>
/// The limits a request head is held to: Kestrel's, as the sidecar sets them (<c>SidecarHost</c>: 32 KiB of headers,
/// 10 s for the head), so the fast path refuses exactly where the YARP path would.
/// </summary>
internal sealed record Http1Limits
{
    public static Http1Limits Sidecar { get; } = new();

    /// <summary>Kestrel's MaxRequestLineSize: the request line with its CRLF.</summary>
    public int MaxRequestLine { get; init; } = 8 * 1024;

    /// <summary>Kestrel's MaxRequestHeadersTotalSize: the header lines with their CRLFs.</summary>
    public int MaxHeadersTotal { get; init; } = 32 * 1024;

    /// <summary>Kestrel's MaxRequestHeaderCount.</summary>
    public int MaxHeaderCount { get; init; } = 100;

    /// <summary>Kestrel's RequestHeadersTimeout.</summary>
    public TimeSpan HeadTimeout { get; init; } = TimeSpan.FromSeconds(10);
}
