using System.Buffers;
using System.Text;

namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>
/// One connection's parsed response head from the app, reused per response like <see cref="Http1RequestHead"/>:
/// <c>HTTP/1.x SP 3DIGIT [SP reason] CRLF</c>, the field section, and the body's framing (RFC 9112 §6.3): none for a
/// HEAD request and for 1xx, 204 and 304; chunked when the final coding is chunked; Content-Length; otherwise until
/// the app closes. Content-Length with Transfer-Encoding, or more than one Content-Length, is refused: the client
/// behind the sidecar could frame it differently.
/// </summary>
internal sealed class Http1ResponseHead(int maxLine = 8 * 1024, int maxFields = 64 * 1024, int maxFieldCount = 200) : IDisposable
{
    private readonly Http1Field[] _fields = new Http1Field[maxFieldCount];
    private byte[]? _copy;
    private int _statusLineLength;

    public ReadOnlyMemory<byte> Bytes { get; private set; }

    public int Length { get; private set; }

    public int Status { get; private set; }

    /// <summary>The status line's version is HTTP/1.0 (the connection then closes after the response).</summary>
    public bool IsHttp10 { get; private set; }

    /// <summary>The reason phrase, possibly empty.</summary>
    public ReadOnlySpan<byte> ReasonPhrase => _statusLineLength > 13 ? Bytes.Span[13.._statusLineLength] : default;

    public int FieldCount { get; private set; }

    public Http1BodyKind BodyKind { get; private set; }

    public long ContentLength { get; private set; }

    public Http1Refusal Refusal { get; private set; }

    public ReadOnlySpan<Http1Field> Fields => _fields.AsSpan(0, FieldCount);

    /// <summary>Parses the head at the start of <paramref name="buffer"/>, the answer to a request with <paramref name="requestMethodIsHead"/>.</summary>
    public Http1ParseStatus TryParse(in ReadOnlySequence<byte> buffer, bool requestMethodIsHead)
    {
        Bytes = buffer.First;
        var status = Parse(Bytes.Span, requestMethodIsHead);
        if (status == Http1ParseStatus.NeedMoreData && !buffer.IsSingleSegment)
        {
            var length = (int)Math.Min(buffer.Length, maxLine + maxFields + 2L);
            _copy ??= ArrayPool<byte>.Shared.Rent(maxLine + maxFields + 2);
            buffer.Slice(0, length).CopyTo(_copy);
            Bytes = _copy.AsMemory(0, length);
            status = Parse(Bytes.Span, requestMethodIsHead);
        }
        return status;
    }

    public void Dispose()
    {
        if (_copy is { } copy)
        {
            _copy = null;
            ArrayPool<byte>.Shared.Return(copy);
        }
    }

    private Http1ParseStatus Parse(ReadOnlySpan<byte> s, bool requestMethodIsHead)
    {
        Length = 0;
        FieldCount = 0;
        BodyKind = Http1BodyKind.None;
        ContentLength = 0;
        Refusal = Http1Refusal.None;
        _statusLineLength = 0;
        var lf = s[..Math.Min(s.Length, maxLine)].IndexOf((byte)'\n');
        if (lf < 0)
        {
            return s.Length >= maxLine ? Refuse(Http1Refusal.InvalidStatusLine) : Http1ParseStatus.NeedMoreData;
        }
        if (lf == 0 || s[lf - 1] != (byte)'\r')
        {
            return Refuse(Http1Refusal.BareLineFeed);
        }
        var line = s[..(lf - 1)];
        if (line.Length < 12 || !(line.StartsWith("HTTP/1.1 "u8) || line.StartsWith("HTTP/1.0 "u8))
            || line[9..12].ContainsAnyExceptInRange((byte)'0', (byte)'9') || line[9] == (byte)'0'
            || (line.Length > 12 && line[12] != (byte)' ') || line[12..].ContainsAny(Http1Syntax.NotInFieldValue))
        {
            return Refuse(Http1Refusal.InvalidStatusLine);
        }
        _statusLineLength = line.Length;
        IsHttp10 = line[7] == (byte)'0';
        Status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');

        var (status, refusal) = Http1FieldSection.Parse(s, lf + 1, _fields, maxFields + 2, out var count, out var end);
        FieldCount = count;
        if (status != Http1ParseStatus.Complete)
        {
            return status == Http1ParseStatus.Refused ? Refuse(refusal) : status;
        }
        Length = end;

        int lengths = 0, codings = 0;
        Http1Field length = default, coding = default;
        foreach (ref readonly var field in Fields)
        {
            if (Http1FieldSection.NameIs(s, field, "content-length"u8))
            {
                lengths++;
                length = field;
            }
            else if (Http1FieldSection.NameIs(s, field, "transfer-encoding"u8))
            {
                codings++;
                coding = field;
            }
        }
        if (lengths > 1)
        {
            return Refuse(Http1Refusal.DuplicateContentLength);
        }
        if (lengths == 1 && codings > 0)
        {
            return Refuse(Http1Refusal.ContentLengthWithTransferEncoding);
        }
        long n = 0;
        if (lengths == 1 && !Http1Syntax.TryParseDecimal(Http1FieldSection.Value(s, length), out n))
        {
            return Refuse(Http1Refusal.InvalidContentLength);
        }
        if (requestMethodIsHead || Status is < 200 or 204 or 304)
        {
            return Http1ParseStatus.Complete;
        }
        if (codings > 0)
        {
            var value = Http1FieldSection.Value(s, coding);
            var chunked = codings == 1 && Ascii.EqualsIgnoreCase(Http1Syntax.TrimOws(value[(value.LastIndexOf((byte)',') + 1)..]), "chunked"u8);
            BodyKind = chunked ? Http1BodyKind.Chunked : Http1BodyKind.UntilClose;
        }
        else if (lengths == 1)
        {
            ContentLength = n;
            BodyKind = n == 0 ? Http1BodyKind.None : Http1BodyKind.ContentLength;
        }
        else
        {
            BodyKind = Http1BodyKind.UntilClose;
        }
        return Http1ParseStatus.Complete;
    }

    private Http1ParseStatus Refuse(Http1Refusal refusal)
    {
        Refusal = refusal;
        return Http1ParseStatus.Refused;
    }
}
