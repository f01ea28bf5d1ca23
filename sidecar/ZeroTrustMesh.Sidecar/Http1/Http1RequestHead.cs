using System.Buffers;
using System.Text;
using System.Text.Unicode;

namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>How a message's body is framed (RFC 9112 §6.3).</summary>
internal enum Http1BodyKind : byte
{
    None,
    ContentLength,
    Chunked,

    /// <summary>A response without Content-Length or chunked coding: the body ends when the app closes.</summary>
    UntilClose,
}

/// <summary>
/// One connection's parsed request head, reused for every request on it (the field table is allocated once, so a
/// request costs no allocation). The positions point into <see cref="Bytes"/>, which is the pipe's own memory (or a
/// copy when the head spans segments) and is valid until the reader advances past <see cref="Length"/>.
/// </summary>
/// <remarks>
/// What it refuses, and where Kestrel refuses the same bytes with the same status: a request line that is not
/// <c>token SP target SP HTTP/1.x CRLF</c> (400; 505 for another version; 414 when longer than the limit without its
/// LF), a target with controls or spaces or, once percent-decoded, NUL or bytes that are not UTF-8 (400), the field
/// section's refusals (<see cref="Http1FieldSection"/>), HTTP/1.1 without exactly one valid Host (400), more than one
/// or a non-numeric Content-Length (400), Transfer-Encoding whose final coding is not chunked (400), and — the
/// sidecar's own rule (<c>RequestFraming</c>), since Kestrel would go by Transfer-Encoding — Content-Length together
/// with Transfer-Encoding (400). Stricter than Kestrel on purpose: a bare LF anywhere, which Kestrel may take as a
/// line end; a relay that forwards the head's bytes must not pass on what the app could read another way.
/// </remarks>
internal sealed class Http1RequestHead(Http1Limits limits) : IDisposable
{
    private readonly Http1Field[] _fields = new Http1Field[limits.MaxHeaderCount];
    private byte[]? _copy;

    public Http1Limits Limits { get; } = limits;

    public ReadOnlyMemory<byte> Bytes { get; private set; }

    /// <summary>The head's length in bytes, its final CRLF included.</summary>
    public int Length { get; private set; }

    public Range Method { get; private set; }

    public Range Target { get; private set; }

    public bool IsHttp10 { get; private set; }

    public int FieldCount { get; private set; }

    public Http1BodyKind BodyKind { get; private set; }

    public long ContentLength { get; private set; }

    public Http1Refusal Refusal { get; private set; }

    public ReadOnlySpan<Http1Field> Fields => _fields.AsSpan(0, FieldCount);

    public ReadOnlySpan<byte> MethodBytes => Bytes.Span[Method];

    public ReadOnlySpan<byte> TargetBytes => Bytes.Span[Target];

    /// <summary>Parses the head at the start of <paramref name="buffer"/>; nothing is consumed.</summary>
    public Http1ParseStatus TryParse(in ReadOnlySequence<byte> buffer)
    {
        Reset();
        Bytes = buffer.First;
        var status = Parse(Bytes.Span);
        if (status == Http1ParseStatus.NeedMoreData && !buffer.IsSingleSegment)
        {
            // The head spans segments: parse a copy of as much as could still be a head.
            var length = (int)Math.Min(buffer.Length, Limits.MaxRequestLine + Limits.MaxHeadersTotal + 2L);
            _copy ??= ArrayPool<byte>.Shared.Rent(Limits.MaxRequestLine + Limits.MaxHeadersTotal + 2);
            buffer.Slice(0, length).CopyTo(_copy);
            Reset();
            Bytes = _copy.AsMemory(0, length);
            status = Parse(Bytes.Span);
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

    private void Reset()
    {
        Length = 0;
        FieldCount = 0;
        BodyKind = Http1BodyKind.None;
        ContentLength = 0;
        Refusal = Http1Refusal.None;
        IsHttp10 = false;
    }

    private Http1ParseStatus Parse(ReadOnlySpan<byte> s)
    {
        // Empty lines before the request line are skipped, as Kestrel does (RFC 9112 §2.2), and never forwarded.
        var start = 0;
        while (start + 1 < s.Length && s[start] == (byte)'\r' && s[start + 1] == (byte)'\n')
        {
            start += 2;
        }
        var rest = s[start..];
        var lf = rest[..Math.Min(rest.Length, Limits.MaxRequestLine)].IndexOf((byte)'\n');
        if (lf < 0)
        {
            return rest.Length >= Limits.MaxRequestLine ? Refuse(Http1Refusal.RequestLineTooLong) : Http1ParseStatus.NeedMoreData;
        }
        if (lf == 0 || rest[lf - 1] != (byte)'\r')
        {
            return Refuse(Http1Refusal.BareLineFeed);
        }
        var line = rest[..(lf - 1)];
        if (line.Contains((byte)'\r'))
        {
            return Refuse(Http1Refusal.InvalidRequestLine);
        }
        var sp1 = line.IndexOf((byte)' ');
        if (sp1 <= 0)
        {
            return Refuse(sp1 == 0 ? Http1Refusal.InvalidRequestLine : Http1Refusal.InvalidMethod);
        }
        if (line[..sp1].ContainsAnyExcept(Http1Syntax.Token))
        {
            return Refuse(Http1Refusal.InvalidMethod);
        }
        var afterMethod = line[(sp1 + 1)..];
        var sp2 = afterMethod.IndexOf((byte)' ');
        if (sp2 <= 0)
        {
            return Refuse(Http1Refusal.InvalidRequestLine);
        }
        var target = afterMethod[..sp2];
        if (target.ContainsAny(Http1Syntax.NotInTarget))
        {
            return Refuse(Http1Refusal.InvalidTarget);
        }
        var version = afterMethod[(sp2 + 1)..];
        if (version.SequenceEqual("HTTP/1.1"u8))
        {
            IsHttp10 = false;
        }
        else if (version.SequenceEqual("HTTP/1.0"u8))
        {
            IsHttp10 = true;
        }
        else
        {
            // Eight bytes that are not a version Kestrel speaks: 505; anything else is a malformed line: 400.
            return Refuse(version.Length == "HTTP/1.1".Length ? Http1Refusal.UnsupportedVersion : Http1Refusal.InvalidRequestLine);
        }
        Method = new Range(start, start + sp1);
        Target = new Range(start + sp1 + 1, start + sp1 + 1 + sp2);

        var (status, refusal) = Http1FieldSection.Parse(s, start + lf + 1, _fields, Limits.MaxHeadersTotal + 2, out var count, out var end);
        FieldCount = count;
        if (status != Http1ParseStatus.Complete)
        {
            return status == Http1ParseStatus.Refused ? Refuse(refusal) : status;
        }
        Length = end;
        return Frame(s, line[..sp1], target);
    }

    /// <summary>After a whole head: the target's form, Host, and how the body is framed.</summary>
    private Http1ParseStatus Frame(ReadOnlySpan<byte> s, ReadOnlySpan<byte> method, ReadOnlySpan<byte> target)
    {
        var fallback = false;
        if (target[0] == (byte)'/')
        {
            if (!IsValidOriginForm(target))
            {
                return Refuse(Http1Refusal.InvalidTarget);
            }
        }
        else if (target.SequenceEqual("*"u8))
        {
            if (!method.SequenceEqual("OPTIONS"u8))
            {
                return Refuse(Http1Refusal.OptionsMethodRequired);
            }
        }
        else if (method.SequenceEqual("CONNECT"u8) || StartsWithIgnoreCase(target, "http://"u8) || StartsWithIgnoreCase(target, "https://"u8))
        {
            fallback = true; // authority-form or absolute-form: Kestrel checks them against Host, YARP routes them
        }
        else
        {
            return Refuse(Http1Refusal.InvalidTarget);
        }
        fallback |= method.SequenceEqual("CONNECT"u8);

        int hosts = 0, lengths = 0, codings = 0;
        Http1Field host = default, length = default, coding = default;
        foreach (ref readonly var field in Fields)
        {
            if (Http1FieldSection.NameIs(s, field, "host"u8))
            {
                hosts++;
                host = field;
            }
            else if (Http1FieldSection.NameIs(s, field, "content-length"u8))
            {
                lengths++;
                length = field;
            }
            else if (Http1FieldSection.NameIs(s, field, "transfer-encoding"u8))
            {
                codings++;
                coding = field;
            }
            else if (Http1FieldSection.NameIs(s, field, "upgrade"u8)
                || (Http1FieldSection.NameIs(s, field, "expect"u8) && Ascii.EqualsIgnoreCase(Http1FieldSection.Value(s, field), "100-continue"u8)))
            {
                fallback = true;
            }
        }
        if (hosts > 1)
        {
            return Refuse(Http1Refusal.DuplicateHost);
        }
        if (hosts == 0 && !IsHttp10)
        {
            return Refuse(Http1Refusal.MissingHost);
        }
        if (hosts == 1 && !Http1Syntax.IsValidHost(Http1FieldSection.Value(s, host)))
        {
            return Refuse(Http1Refusal.InvalidHost);
        }
        if (lengths > 1)
        {
            return Refuse(Http1Refusal.DuplicateContentLength);
        }
        long contentLength = 0;
        if (lengths == 1 && !Http1Syntax.TryParseDecimal(Http1FieldSection.Value(s, length), out contentLength))
        {
            return Refuse(Http1Refusal.InvalidContentLength);
        }
        if (codings > 0)
        {
            if (lengths > 0)
            {
                return Refuse(Http1Refusal.ContentLengthWithTransferEncoding);
            }
            var value = Http1FieldSection.Value(s, coding);
            var comma = value.LastIndexOf((byte)',');
            if (!Ascii.EqualsIgnoreCase(Http1Syntax.TrimOws(value[(comma + 1)..]), "chunked"u8))
            {
                return Refuse(Http1Refusal.FinalCodingNotChunked);
            }
            // Only a lone "chunked" on HTTP/1.1 is framed here; other codings before it, or several headers, go to Kestrel.
            fallback |= codings > 1 || comma >= 0 || IsHttp10;
            BodyKind = Http1BodyKind.Chunked;
        }
        else if (lengths == 0 && IsHttp10 && (method.SequenceEqual("POST"u8) || method.SequenceEqual("PUT"u8)))
        {
            return Refuse(Http1Refusal.LengthRequired); // HTTP/1.0 has no chunked coding: Kestrel wants the length
        }
        else if (lengths == 1)
        {
            ContentLength = contentLength;
            BodyKind = contentLength == 0 ? Http1BodyKind.None : Http1BodyKind.ContentLength;
        }
        return fallback ? Http1ParseStatus.Fallback : Http1ParseStatus.Complete;
    }

    /// <summary>Kestrel decodes the path's percent-escapes and refuses a NUL or bytes that are not UTF-8 in it; the
    /// query is kept raw and must be UTF-8.</summary>
    private static bool IsValidOriginForm(ReadOnlySpan<byte> target)
    {
        var question = target.IndexOf((byte)'?');
        var path = question < 0 ? target : target[..question];
        if (question >= 0 && !Utf8.IsValid(target[(question + 1)..]))
        {
            return false;
        }
        if (!path.Contains((byte)'%'))
        {
            return Utf8.IsValid(path);
        }
        Span<byte> decoded = path.Length <= 1024 ? stackalloc byte[path.Length] : new byte[path.Length];
        var n = 0;
        for (var i = 0; i < path.Length; i++)
        {
            if (path[i] == (byte)'%' && i + 2 < path.Length && IsHex(path[i + 1]) && IsHex(path[i + 2]))
            {
                decoded[n++] = (byte)((HexValue(path[i + 1]) << 4) | HexValue(path[i + 2]));
                i += 2;
            }
            else
            {
                decoded[n++] = path[i];
            }
        }
        decoded = decoded[..n];
        return !decoded.Contains((byte)0) && Utf8.IsValid(decoded);
    }

    private static bool StartsWithIgnoreCase(ReadOnlySpan<byte> s, ReadOnlySpan<byte> prefix) =>
        s.Length >= prefix.Length && Ascii.EqualsIgnoreCase(s[..prefix.Length], prefix);

    private static bool IsHex(byte b) => Http1Syntax.HexDigits.Contains(b);

    private static int HexValue(byte b) => b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;

    private Http1ParseStatus Refuse(Http1Refusal refusal)
    {
        Refusal = refusal;
        return Http1ParseStatus.Refused;
    }
}
