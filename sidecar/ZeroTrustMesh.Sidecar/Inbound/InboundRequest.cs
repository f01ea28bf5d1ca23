using System.Buffers;
using System.Net;
using System.Runtime.CompilerServices;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Primitives;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Authorization;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>
/// The one record of an inbound request that every stage reads: who calls (the SVID verified at the handshake, or a
/// plaintext caller), which application port, method, normalized path, headers, claims (once the JWT stage has
/// validated a token), source address and time. Created once per request by <see cref="InboundProxy"/>.
/// </summary>
internal sealed class InboundRequest(HttpContext http, SpiffeId? caller, int port, string path, DateTimeOffset now)
{
    /// <summary>The name of a caller without a verified identity, in metrics, the access log and rate limits.</summary>
    public const string PlaintextCaller = "plaintext";

    private IRequestValues? _headerValues;
    private byte[]? _body;
    private int _bodyLength;
    private bool _bodyComplete;
    private List<IResponseTransform>? _transforms;

    public HttpContext Http { get; } = http;

    /// <summary>The caller's verified SPIFFE ID; null for a plaintext caller of a PERMISSIVE workload.</summary>
    public SpiffeId? Caller { get; } = caller;

    /// <summary>The caller's SPIFFE ID as text, or <see cref="PlaintextCaller"/>.</summary>
    public string CallerName { get; } = caller?.Value ?? PlaintextCaller;

    public string? CallerNamespace { get; } = caller is { } id && id.TryGetWorkload(out var ns, out _) ? ns : null;

    public bool IsPlaintext => Caller is null;

    /// <summary>The declared application port the request is for.</summary>
    public int Port { get; } = port;

    public string Method => Http.Request.Method;

    /// <summary>The path as policy sees it and the app receives it (see <see cref="InboundPath"/>).</summary>
    public string Path { get; } = path;

    public IHeaderDictionary Headers => Http.Request.Headers;

    /// <summary>The headers as the authorizer reads them.</summary>
    public IRequestValues HeaderValues => _headerValues ??= new HeaderLookup(Http.Request.Headers);

    public IPAddress? SourceAddress => Http.Connection.RemoteIpAddress;

    public DateTimeOffset Now { get; } = now;

    /// <summary>Claims of the bearer token the JWT stage validated; null without one.</summary>
    public IRequestValues? Claims { get; set; }

    /// <summary>The validated token's <c>sub</c> claim, or null (for observations).</summary>
    public string? Subject => Claims is { } claims && claims.TryGetValue("sub", 0, out var subject) ? subject : null;

    /// <summary>The policy (<c>namespace/name</c>) whose rule decided (<see cref="Authorization"/>), or null when none did.</summary>
    public string? DecidingPolicy => Authorization?.Policy;

    /// <summary>The index of the rule that decided in <see cref="DecidingPolicy"/>; -1 when none did.</summary>
    public int DecidingRule => Authorization?.Rule ?? -1;

    /// <summary>Set by the API protection stage: the declared path template of the operation the request matched.</summary>
    public string? ApiTemplate { get; set; }

    /// <summary>Set by the API protection stage: what it found; unspecified when no ApiSpec applies.</summary>
    public Proto.V1.SchemaVerdict SchemaVerdict { get; set; }
    /// <summary>Set by the authorization stage: the decision and the policy and rule that made it; null until it ran.</summary>
    public AuthorizationDecision? Authorization { get; set; }

    /// <summary>Set by the JWT stage: the validated token is removed before the app (unless its rule forwards it).</summary>
    public bool RemoveAuthorization { get; set; }

    /// <summary>Whether a stage asked for the body (it is buffered and replayed); false for most requests.</summary>
    public bool BodyBuffered => Http.Request.Body is ReplayStream;

    /// <summary>The transforms stages registered for the response, in stage order; null when none (the common case).</summary>
    public IReadOnlyList<IResponseTransform>? ResponseTransforms => _transforms;

    /// <summary>Registers a rewrite of this request's response body; see <see cref="IResponseTransform"/>.</summary>
    public void TransformResponse(IResponseTransform transform) => (_transforms ??= []).Add(transform);

    /// <summary>
    /// The request body, buffered up to <paramref name="maxBytes"/>, for a stage that must see it (schema validation).
    /// The first stage that asks reads it; later ones share the buffer; the app receives exactly the bytes the caller
    /// sent, whether or not the body fit (a body over the cap is not lost: what was read is replayed ahead of the rest).
    /// A declared Content-Length over the cap is answered without reading anything.
    /// </summary>
    /// <remarks>A read that waits for the caller reuses a pooled state machine (no allocation per request).</remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<RequestBody> ReadBodyAsync(int maxBytes, CancellationToken cancellation)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        if (Http.Request.ContentLength is { } declared && declared > maxBytes)
        {
            return RequestBody.TooLarge(declared);
        }
        if (!_bodyComplete && _bodyLength <= maxBytes)
        {
            await BufferAsync(maxBytes, cancellation);
        }
        return _bodyComplete && _bodyLength <= maxBytes
            ? new RequestBody(_body.AsMemory(0, _bodyLength), RequestBodyStatus.Read)
            : RequestBody.TooLarge(Http.Request.ContentLength);
    }

    /// <summary>Reads until the body ends or holds more than <paramref name="maxBytes"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask BufferAsync(int maxBytes, CancellationToken cancellation)
    {
        var source = Http.Request.Body;
        if (_body is null)
        {
            _body = ArrayPool<byte>.Shared.Rent(Math.Min(maxBytes + 1, 16 * 1024));
            Http.Response.RegisterForDispose(new PooledBuffer(this));
            // From now on the app reads the buffered bytes first, then whatever the caller has not sent yet.
            Http.Request.Body = new ReplayStream(this, source);
        }
        while (_bodyLength <= maxBytes)
        {
            if (_bodyLength == _body.Length)
            {
                var larger = ArrayPool<byte>.Shared.Rent(Math.Min(_body.Length * 2, maxBytes + 1));
                _body.AsSpan(0, _bodyLength).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_body);
                _body = larger;
            }
            var read = await ((ReplayStream)Http.Request.Body).Source.ReadAsync(_body.AsMemory(_bodyLength), cancellation);
            if (read == 0)
            {
                _bodyComplete = true;
                return;
            }
            _bodyLength += read;
        }
    }

    /// <summary>Request headers for the authorizer, read in place.</summary>
    private sealed class HeaderLookup(IHeaderDictionary headers) : IRequestValues
    {
        public bool TryGetValue(string name, int index, [NotNullWhen(true)] out string? value)
        {
            value = headers.TryGetValue(name, out StringValues values) && index < values.Count ? values[index] : null;
            return value is not null;
        }
    }

    private sealed class PooledBuffer(InboundRequest request) : IDisposable
    {
        public void Dispose()
        {
            if (request._body is { } body)
            {
                request._body = null;
                ArrayPool<byte>.Shared.Return(body);
            }
        }
    }

    /// <summary>What the app reads once a stage buffered the body: the buffered bytes, then the rest of the caller's body.</summary>
    private sealed class ReplayStream(InboundRequest request, Stream source) : Stream
    {
        private int _position;

        public Stream Source => source;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_position < request._bodyLength)
            {
                var count = Math.Min(buffer.Length, request._bodyLength - _position);
                request._body.AsMemory(_position, count).CopyTo(buffer);
                _position += count;
                return count;
            }
            return request._bodyComplete ? 0 : await source.ReadAsync(buffer, cancellationToken);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

internal enum RequestBodyStatus
{
    Read,
    TooLarge,
}

/// <summary>A buffered request body, or the news that it exceeds the cap the stage asked with (<see cref="DeclaredLength"/> when known).</summary>
internal readonly record struct RequestBody(ReadOnlyMemory<byte> Bytes, RequestBodyStatus Status, long? DeclaredLength = null)
{
    public static RequestBody TooLarge(long? declared) => new(default, RequestBodyStatus.TooLarge, declared);
}
