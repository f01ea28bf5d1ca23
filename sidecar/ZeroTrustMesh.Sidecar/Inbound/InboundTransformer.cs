using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Forwarder;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>
/// What the hop to the app changes in a request and its response, for both ways of making it (YARP's forwarder and,
/// with <c>--http1-fast-path</c>, <see cref="Http1.Http1AppHop"/>): the mesh headers stripped and the identity header
/// set to the verified caller, <c>Host</c> kept as the caller sent it, and a response wrapped in the transforms the
/// stages registered.
/// </summary>
/// <param name="transforms">The response transforms of one request; null for the shared instance (no transforms).</param>
internal sealed class InboundTransformer(IReadOnlyList<IResponseTransform>? transforms) : HttpTransformer
{
    private List<Stream>? _wrapped;

    /// <summary>
    /// Whether a request header is left out because the response will be transformed: a transform rewrites the whole
    /// body as it comes, so the app must send all of it (a 206 with part of it would pass untransformed), uncompressed
    /// (the hop is loopback anyway).
    /// </summary>
    public bool DropsRequestHeader(string name) =>
        transforms is not null
        && (string.Equals(name, HeaderNames.AcceptEncoding, StringComparison.OrdinalIgnoreCase)
            || string.Equals(name, HeaderNames.Range, StringComparison.OrdinalIgnoreCase)
            || string.Equals(name, HeaderNames.IfRange, StringComparison.OrdinalIgnoreCase));

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        MeshHeaders.Strip(proxyRequest.Headers, httpContext.Request.Headers);
        if (httpContext.Features.Get<PeerIdentityFeature>() is { } peer)
        {
            proxyRequest.Headers.TryAddWithoutValidation(MeshHeaders.ClientIdentity, peer.Id.Value);
        }
        proxyRequest.Headers.Host = httpContext.Request.Host.Value;
        if (transforms is not null)
        {
            proxyRequest.Headers.Remove(HeaderNames.AcceptEncoding);
            proxyRequest.Headers.Remove(HeaderNames.Range);
            proxyRequest.Headers.Remove(HeaderNames.IfRange);
        }
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var proceed = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is not null)
        {
            WrapResponse(httpContext.Response);
        }
        return proceed;
    }

    /// <summary>Once the app's status and headers are on <paramref name="response"/>: wraps its body in each transform that applies.</summary>
    public void WrapResponse(HttpResponse response)
    {
        if (transforms is null)
        {
            return;
        }
        foreach (var transform in transforms)
        {
            if (transform.Applies(response))
            {
                // The body changes length: it goes out chunked (HTTP/1.1) or in DATA frames without a length.
                response.Headers.ContentLength = null;
                response.Body = transform.Wrap(response.Body);
                (_wrapped ??= []).Add(response.Body);
            }
        }
    }

    /// <summary>Flushes what the transforms still hold, innermost (the last wrapped, which the hop wrote to) first.</summary>
    public async ValueTask CompleteAsync()
    {
        if (_wrapped is null)
        {
            return;
        }
        for (var i = _wrapped.Count - 1; i >= 0; i--)
        {
            await _wrapped[i].DisposeAsync();
        }
    }
}
