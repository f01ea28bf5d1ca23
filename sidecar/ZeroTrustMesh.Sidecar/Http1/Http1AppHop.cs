using System.Buffers;
using System.Buffers.Text;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Forwarder;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>What <see cref="Http1AppHop.SendAsync"/> did: left the request to YARP, or forwarded it (with YARP's error names).</summary>
internal readonly record struct Http1HopResult(bool Carried, ForwarderError Error, Exception? Exception)
{
    public static Http1HopResult NotCarried => default;
}

/// <summary>
/// The loopback hop to an HTTP/1.1 app without HttpClient (<c>--http1-fast-path</c>), for a request every inbound stage
/// has already passed, sending what YARP's forwarder would send and answering what it would answer:
/// 1. carried: HTTP/1.1 to the app (not gRPC or h2c), no upgrade (WebSocket), no CONNECT, no <c>Expect</c>, header
///    values in ASCII; anything else returns <see cref="Http1HopResult.NotCarried"/> before a byte is sent, and YARP
///    takes it;
/// 2. the head, written once: the request line with the path the policy matched, <c>Host</c> as the caller sent it,
///    the caller's headers without YARP's hop-by-hop set, the mesh headers or names that fold into them, or values
///    holding CR or LF, then the identity header set to the verified caller; the body's framing as YARP's HttpClient
///    would frame it (the caller's Content-Length, else chunked when the request can have a body);
/// 3. on a pooled connection (<see cref="Http1AppPool"/>), the head and the body's first bytes in one write; the body
///    is relayed while the response is read;
/// 4. the response head parsed by <see cref="Http1ResponseHead"/> (1xx skipped, as HttpClient skips them); status,
///    reason phrase and headers copied without the hop-by-hop set, the stages' transforms wrapped around the body;
/// 5. the body relayed by its framing (<see cref="Http1Body"/>: Content-Length, chunked, until close), decoded;
/// 6. the connection goes back to the pool only after a fully framed exchange with nothing left over and no
///    <c>Connection: close</c>; a pooled connection the app had closed before answering is retried once on another
///    when the request had no body (as SocketsHttpHandler retries);
/// 7. failures carry YARP's <see cref="ForwarderError"/> names and their exception, so the 502 and its reason read as
///    on the YARP path; no progress for the activity timeout (YARP's default, 100 s) is
///    <see cref="ForwarderError.RequestTimedOut"/>.
/// </summary>
internal sealed class Http1AppHop(Http1AppPool pool, TimeSpan activityTimeout)
{
    /// <summary>YARP's default <see cref="ForwarderRequestConfig.ActivityTimeout"/>.</summary>
    public static readonly TimeSpan DefaultActivityTimeout = TimeSpan.FromSeconds(100);

    /// <summary>Body bytes gathered before a write to the app: the head and a small body go in one.</summary>
    private const int FlushThreshold = 32 * 1024;

    private const int MaxStaleRetries = 2;

    /// <summary>YARP's <c>RequestUtilities</c> hop-by-hop set, left out both ways.</summary>
    private static readonly string[] HopByHop =
    [
        HeaderNames.Connection, HeaderNames.TransferEncoding, HeaderNames.KeepAlive, HeaderNames.Upgrade, "Proxy-Connection",
        "Proxy-Authenticate", "Proxy-Authentication-Info", "Proxy-Authorization", "Proxy-Features", "Proxy-Instruction",
        "Security-Scheme", "ALPN", "Close", HeaderNames.TE, HeaderNames.AltSvc,
    ];

    /// <summary>Response header names as interned strings, so the common ones cost no allocation.</summary>
    private static readonly string[] KnownResponseHeaders =
    [
        HeaderNames.ContentType, HeaderNames.ContentLength, HeaderNames.Date, HeaderNames.Server, HeaderNames.CacheControl,
        HeaderNames.ETag, HeaderNames.LastModified, HeaderNames.Location, HeaderNames.SetCookie, HeaderNames.Vary,
        HeaderNames.ContentEncoding, HeaderNames.Expires, HeaderNames.AcceptRanges, HeaderNames.ContentRange,
        HeaderNames.RetryAfter, HeaderNames.WWWAuthenticate, HeaderNames.TransferEncoding, HeaderNames.Connection,
        HeaderNames.KeepAlive, HeaderNames.Trailer, HeaderNames.Allow, HeaderNames.ContentLanguage, HeaderNames.ContentDisposition,
    ];

    public static bool Carries(HttpContext context, bool http2ToApp)
    {
        var request = context.Request;
        return !http2ToApp
            && !HttpMethods.IsConnect(request.Method)
            && context.Features.Get<IHttpUpgradeFeature>()?.IsUpgradableRequest != true
            && context.Features.Get<IHttpExtendedConnectFeature>()?.IsExtendedConnect != true
            && StringValues.IsNullOrEmpty(request.Headers.Expect)
            && StringValues.IsNullOrEmpty(request.Headers.Upgrade);
    }

    /// <summary>Forwards the request to the app on <paramref name="port"/>, or returns <see cref="Http1HopResult.NotCarried"/> (nothing sent).</summary>
    public async ValueTask<Http1HopResult> SendAsync(HttpContext context, int port, bool http2ToApp, InboundTransformer transformer)
    {
        if (!Carries(context, http2ToApp))
        {
            return Http1HopResult.NotCarried;
        }
        var hasBody = context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? true;
        var chunked = hasBody && context.Request.ContentLength is null;
        for (var attempt = 0; ; attempt++)
        {
            Http1AppConnection connection;
            try
            {
                connection = await pool.RentAsync(port, context.RequestAborted);
            }
            catch (Exception e)
            {
                return new(true, context.RequestAborted.IsCancellationRequested ? ForwarderError.RequestCanceled : ForwarderError.Request, e);
            }
            var head = connection.Decoded;
            head.ResetWrittenCount();
            if (!WriteHead(head, context, transformer, hasBody, chunked))
            {
                pool.Return(connection);
                return Http1HopResult.NotCarried;
            }
            var outcome = await ExchangeAsync(context, connection, transformer, hasBody, chunked);
            if (outcome.Reusable)
            {
                pool.Return(connection);
            }
            else
            {
                connection.Dispose();
            }
            if (!outcome.Stale || attempt == MaxStaleRetries)
            {
                return new(true, outcome.Error, outcome.Exception);
            }
        }
    }

    private readonly record struct Outcome(ForwarderError Error, Exception? Exception, bool Reusable, bool Stale);

    private async ValueTask<Outcome> ExchangeAsync(HttpContext context, Http1AppConnection connection, InboundTransformer transformer, bool hasBody, bool chunked)
    {
        using var aborted = context.RequestAborted.UnsafeRegister(static c => ((Http1AppConnection)c!).Cancel(), connection);
        connection.Touch(activityTimeout);
        var phase = Phase.Head;
        Task sending = Task.CompletedTask;
        try
        {
            connection.Output.Write(connection.Decoded.WrittenSpan);
            sending = hasBody ? SendBodyAsync(context.Request.BodyReader, connection, chunked) : FlushHeadAsync(connection);

            var input = connection.Input;
            var response = connection.Head;
            var isHead = HttpMethods.IsHead(context.Request.Method);
            ReadResult result;
            ReadOnlySequence<byte> buffer;
            while (true)
            {
                result = await input.ReadAsync(connection.Activity);
                connection.Touch(activityTimeout);
                buffer = result.Buffer;
                var status = buffer.IsEmpty ? Http1ParseStatus.NeedMoreData : response.TryParse(buffer, isHead);
                if (status == Http1ParseStatus.Complete && response.Status is >= 100 and < 200 and not 101)
                {
                    input.AdvanceTo(buffer.GetPosition(response.Length)); // an interim response: HttpClient skips it too
                    continue;
                }
                if (status == Http1ParseStatus.Complete && response.Status != 101)
                {
                    break;
                }
                if (status != Http1ParseStatus.NeedMoreData)
                {
                    throw new HttpRequestException($"The app's response head is invalid: {ResponseReason(response.Refusal)}");
                }
                if (result.IsCompleted)
                {
                    if (buffer.IsEmpty && connection.Exchanges > 0 && !hasBody)
                    {
                        return new(ForwarderError.Request, null, Reusable: false, Stale: true);
                    }
                    throw new HttpIOException(HttpRequestError.ResponseEnded, "The response ended prematurely");
                }
                input.AdvanceTo(buffer.Start, buffer.End);
            }

            var close = CopyHead(context, response);
            transformer.WrapResponse(context.Response);
            var framing = response.BodyKind;
            var body = new Http1Body(framing, response.ContentLength, maxTrailerBytes: 32 * 1024);
            var afterHead = buffer.Length > response.Length;
            input.AdvanceTo(buffer.GetPosition(response.Length));
            phase = Phase.Body;
            // A response without a body followed by more bytes: the app and the framing disagree on where it ended.
            var leftover = framing == Http1BodyKind.None && afterHead;
            var output = context.Response.BodyWriter;
            while (framing != Http1BodyKind.None)
            {
                result = await input.ReadAsync(connection.Activity);
                connection.Touch(activityTimeout);
                buffer = result.Buffer;
                var decoded = framing == Http1BodyKind.Chunked ? connection.Decoded : null;
                decoded?.ResetWrittenCount();
                var status = body.Read(buffer, result.IsCompleted, decoded, out var consumed);
                if (status == Http1BodyStatus.Refused)
                {
                    throw new InvalidDataException($"The app's response body is invalid: {Http1Refusals.Reason(body.Refusal)}");
                }
                if (decoded is not null)
                {
                    output.Write(decoded.WrittenSpan);
                }
                else
                {
                    foreach (var segment in buffer.Slice(buffer.Start, consumed))
                    {
                        output.Write(segment.Span);
                    }
                }
                phase = Phase.ToCaller;
                var flushed = await output.FlushAsync(context.RequestAborted);
                phase = Phase.Body;
                if (status == Http1BodyStatus.Complete)
                {
                    leftover = !buffer.Slice(consumed).IsEmpty;
                    input.AdvanceTo(consumed);
                    break;
                }
                input.AdvanceTo(consumed, buffer.End);
                if (flushed.IsCanceled || flushed.IsCompleted)
                {
                    return new(ForwarderError.ResponseBodyClient, new OperationCanceledException("the caller went away"), Reusable: false, Stale: false);
                }
                if (result.IsCompleted)
                {
                    throw new HttpIOException(HttpRequestError.ResponseEnded, "The response ended prematurely, before the body was complete");
                }
            }

            // The app may answer before it has read the request body; a connection with a body still going is not reused.
            var sent = sending.IsCompletedSuccessfully;
            if (!sending.IsCompleted)
            {
                connection.Cancel();
            }
            try
            {
                await sending;
            }
            catch (Exception e) when (e is BodyException { Error: ForwarderError.RequestBodyClient })
            {
                return new(ForwarderError.RequestBodyClient, e.InnerException, Reusable: false, Stale: false);
            }
            catch (Exception) when (!sent)
            {
                // the app answered without the rest of the body: the response stands
            }
            var reusable = sent && !close && !leftover && framing != Http1BodyKind.UntilClose && connection.Complete();
            return new(ForwarderError.None, null, reusable, Stale: false);
        }
        catch (Exception e)
        {
            connection.Cancel();
            await Observe(sending);
            var stale = phase == Phase.Head && connection.Exchanges > 0 && !hasBody && !context.Response.HasStarted
                && e is IOException or System.Net.Sockets.SocketException && !context.RequestAborted.IsCancellationRequested;
            if (stale)
            {
                return new(ForwarderError.Request, e, Reusable: false, Stale: true);
            }
            var error = Classify(e, phase, context.RequestAborted.IsCancellationRequested);
            if (context.Response.HasStarted)
            {
                context.Abort(); // as YARP: a response cut short must not look complete to the caller
            }
            else if (phase != Phase.Head)
            {
                context.Response.Clear();
            }
            return new(error, e is BodyException b ? b.InnerException : e, Reusable: false, Stale: false);
        }
    }

    private enum Phase : byte
    {
        Head,
        Body,
        ToCaller,
    }

    private static ForwarderError Classify(Exception e, Phase phase, bool callerGone) => e switch
    {
        BodyException body => body.Error,
        OperationCanceledException when callerGone => phase == Phase.Head ? ForwarderError.RequestCanceled : ForwarderError.ResponseBodyCanceled,
        OperationCanceledException => phase == Phase.Head ? ForwarderError.RequestTimedOut : ForwarderError.ResponseBodyCanceled,
        _ => phase switch
        {
            Phase.Head => ForwarderError.Request,
            Phase.Body => ForwarderError.ResponseBodyDestination,
            _ => ForwarderError.ResponseBodyClient,
        },
    };

    private static async Task Observe(Task task)
    {
        try
        {
            await task;
        }
        catch
        {
            // its failure is the exchange's, already being reported
        }
    }

    private async Task FlushHeadAsync(Http1AppConnection connection)
    {
        try
        {
            await connection.Output.FlushAsync(connection.Activity);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new BodyException(ForwarderError.Request, e);
        }
        connection.Touch(activityTimeout);
    }

    private async Task SendBodyAsync(PipeReader body, Http1AppConnection connection, bool chunked)
    {
        var output = connection.Output;
        while (true)
        {
            ReadResult read;
            try
            {
                // What has arrived goes on with the head; the app gets it before the sidecar waits for more, so a
                // small body leaves in the head's write and a streamed one is not held back.
                if (!body.TryRead(out read))
                {
                    if (output.UnflushedBytes > 0)
                    {
                        await Flush(output, connection);
                    }
                    read = await body.ReadAsync(connection.Activity);
                }
            }
            catch (Exception e) when (e is not OperationCanceledException and not BodyException)
            {
                throw new BodyException(ForwarderError.RequestBodyClient, e);
            }
            var buffer = read.Buffer;
            if (!buffer.IsEmpty)
            {
                if (chunked)
                {
                    WriteChunkSize(output, buffer.Length);
                }
                foreach (var segment in buffer)
                {
                    output.Write(segment.Span);
                }
                if (chunked)
                {
                    output.Write("\r\n"u8);
                }
            }
            body.AdvanceTo(buffer.End);
            if (read.IsCompleted)
            {
                break;
            }
            if (output.UnflushedBytes >= FlushThreshold)
            {
                await Flush(output, connection);
            }
        }
        if (chunked)
        {
            output.Write("0\r\n\r\n"u8);
        }
        await Flush(output, connection);

        async ValueTask Flush(PipeWriter output, Http1AppConnection connection)
        {
            try
            {
                await output.FlushAsync(connection.Activity);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new BodyException(ForwarderError.RequestBodyDestination, e);
            }
            connection.Touch(activityTimeout);
        }
    }

    private static void WriteChunkSize(PipeWriter output, long length)
    {
        var span = output.GetSpan(20);
        Utf8Formatter.TryFormat(length, span, out var written, new System.Buffers.StandardFormat('x'));
        span[written++] = (byte)'\r';
        span[written++] = (byte)'\n';
        output.Advance(written);
    }

    /// <summary>Writes the request head as YARP would have HttpClient send it; false (nothing usable written) when a header value is not ASCII.</summary>
    private static bool WriteHead(ArrayBufferWriter<byte> head, HttpContext context, InboundTransformer transformer, bool hasBody, bool chunked)
    {
        var request = context.Request;
        if (!Append(head, request.Method))
        {
            return false;
        }
        head.Write(" "u8);
        if (!Append(head, request.Path.ToUriComponent()) || !Append(head, request.QueryString.Value))
        {
            return false;
        }
        head.Write(" HTTP/1.1\r\nHost: "u8);
        if (!Append(head, request.Host.Value))
        {
            return false;
        }
        head.Write("\r\n"u8);
        foreach (var (name, values) in request.Headers)
        {
            if (name.StartsWith(':') || IsHopByHop(name) || MeshHeaders.IsStripped(name) || transformer.DropsRequestHeader(name)
                || string.Equals(name, HeaderNames.Host, StringComparison.OrdinalIgnoreCase)
                || string.Equals(name, HeaderNames.ContentLength, StringComparison.OrdinalIgnoreCase)
                || HasNewLine(values))
            {
                continue;
            }
            if (!Append(head, name))
            {
                return false;
            }
            head.Write(": "u8);
            var separator = string.Equals(name, HeaderNames.Cookie, StringComparison.OrdinalIgnoreCase) ? "; " : ", ";
            for (var i = 0; i < values.Count; i++)
            {
                if ((i > 0 && !Append(head, separator)) || !Append(head, values[i]))
                {
                    return false;
                }
            }
            head.Write("\r\n"u8);
        }
        if (context.Features.Get<PeerIdentityFeature>() is { } peer)
        {
            head.Write("x-ztm-client-identity: "u8);
            if (!Append(head, peer.Id.Value))
            {
                return false;
            }
            head.Write("\r\n"u8);
        }
        if (chunked)
        {
            head.Write("Transfer-Encoding: chunked\r\n"u8);
        }
        else if (request.ContentLength is { } length && (hasBody || request.Headers.ContainsKey(HeaderNames.ContentLength)))
        {
            head.Write("Content-Length: "u8);
            var span = head.GetSpan(20);
            Utf8Formatter.TryFormat(length, span, out var written);
            head.Advance(written);
            head.Write("\r\n"u8);
        }
        head.Write("\r\n"u8);
        return true;
    }

    private static bool HasNewLine(StringValues values)
    {
        for (var i = 0; i < values.Count; i++)
        {
            if (values[i] is { } value && value.AsSpan().IndexOfAny('\r', '\n') >= 0)
            {
                return true;
            }
        }
        return false;
    }

    private static bool IsHopByHop(string name)
    {
        foreach (var hop in HopByHop)
        {
            if (string.Equals(name, hop, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Appends <paramref name="text"/> as ASCII; false if it is not ASCII.</summary>
    private static bool Append(ArrayBufferWriter<byte> head, string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return true;
        }
        var span = head.GetSpan(text.Length);
        if (Ascii.FromUtf16(text, span, out var written) != OperationStatus.Done)
        {
            return false;
        }
        head.Advance(written);
        return true;
    }

    /// <summary>Copies the app's status, reason phrase and headers (without the hop-by-hop set); true when the app asked to close.</summary>
    private static bool CopyHead(HttpContext context, Http1ResponseHead head)
    {
        var response = context.Response;
        response.StatusCode = head.Status;
        var bytes = head.Bytes.Span;
        if (!head.ReasonPhrase.IsEmpty && !Ascii.Equals(head.ReasonPhrase, ReasonPhrases.GetReasonPhrase(head.Status))
            && context.Features.Get<IHttpResponseFeature>() is { } feature)
        {
            feature.ReasonPhrase = Encoding.Latin1.GetString(head.ReasonPhrase);
        }
        var close = head.IsHttp10;
        foreach (ref readonly var field in head.Fields)
        {
            var rawName = bytes.Slice(field.NameStart, field.NameLength);
            var value = Http1FieldSection.Value(bytes, field);
            if (Ascii.EqualsIgnoreCase(rawName, "connection"u8))
            {
                close = close ? !HasToken(value, "keep-alive"u8) : HasToken(value, "close"u8);
                continue;
            }
            var name = Name(rawName);
            if (IsHopByHop(name))
            {
                continue;
            }
            var text = Encoding.Latin1.GetString(value);
            var existing = response.Headers[name];
            response.Headers[name] = existing.Count == 0 ? new StringValues(text) : StringValues.Concat(existing, text);
        }
        return close;
    }

    private static bool HasToken(ReadOnlySpan<byte> value, ReadOnlySpan<byte> token)
    {
        foreach (var range in value.Split((byte)','))
        {
            if (Ascii.EqualsIgnoreCase(Http1Syntax.TrimOws(value[range]), token))
            {
                return true;
            }
        }
        return false;
    }

    private static string Name(ReadOnlySpan<byte> raw)
    {
        foreach (var known in KnownResponseHeaders)
        {
            if (Ascii.EqualsIgnoreCase(raw, known))
            {
                return known;
            }
        }
        return Encoding.ASCII.GetString(raw);
    }

    private static string ResponseReason(Http1Refusal refusal) => refusal switch
    {
        Http1Refusal.None => "HTTP/1.1 101 Switching Protocols to a request that asked for no upgrade",
        Http1Refusal.HeadTooLarge => "response headers too large",
        Http1Refusal.TooManyHeaders => "too many response headers",
        _ => Http1Refusals.Reason(refusal),
    };

    /// <summary>A failure of the request body's side of the exchange, with the <see cref="ForwarderError"/> YARP names it by.</summary>
    private sealed class BodyException(ForwarderError error, Exception inner) : Exception(inner.Message, inner)
    {
        public ForwarderError Error { get; } = error;
    }
}
