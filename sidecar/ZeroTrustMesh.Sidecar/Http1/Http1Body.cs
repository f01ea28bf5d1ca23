using System.Buffers;

namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>Where reading a body got to.</summary>
internal enum Http1BodyStatus : byte
{
    NeedMoreData,
    Complete,
    Refused,
}

/// <summary>
/// Reads one message body as its head framed it, so a relay knows exactly where the body ends and the next message
/// starts: Content-Length counts bytes; chunked is checked chunk by chunk (RFC 9112 §7.1) — a size of at most 8 hex
/// digits and int.MaxValue (as Kestrel), an optional extension up to CRLF, the data, CRLF, and after the last chunk trailer fields
/// checked like header fields, then CRLF; until-close takes everything. Decoded data can be copied out (the tests
/// compare it); a relay forwards the consumed bytes as they came, framing included, since they passed the check.
/// </summary>
internal struct Http1Body
{
    /// <summary>Kestrel refuses a chunk size of more hex digits than this, leading zeros included.</summary>
    private const int MaxChunkSizeDigits = 8;

    private enum State : byte
    {
        Size,
        SizeDigits,
        Extension,
        SizeLf,
        Data,
        DataCr,
        DataLf,
        TrailerLineStart,
        TrailerName,
        TrailerValue,
        TrailerLineLf,
        TrailerEndLf,
        Done,
    }

    private readonly Http1BodyKind _kind;
    private readonly int _maxTrailerBytes;
    private readonly int _maxTrailerFields;
    private int _trailerFields;
    private long _remaining;
    private State _state;
    private int _digits;
    private int _trailerBytes;

    /// <param name="maxTrailerFields">What the head left of the field count: Kestrel counts trailers with the headers.</param>
    public Http1Body(Http1BodyKind kind, long contentLength, int maxTrailerBytes, int maxTrailerFields = int.MaxValue)
    {
        _maxTrailerFields = maxTrailerFields;
        _kind = kind;
        _remaining = contentLength;
        _maxTrailerBytes = maxTrailerBytes;
        _state = kind == Http1BodyKind.None || (kind == Http1BodyKind.ContentLength && contentLength == 0) ? State.Done : State.Size;
    }

    public Http1Refusal Refusal { get; private set; }

    /// <summary>Decoded body bytes seen so far.</summary>
    public long DataBytes { get; private set; }

    /// <summary>
    /// Reads what it can of <paramref name="input"/>; <paramref name="consumed"/> is where the body's bytes in it end.
    /// <paramref name="isCompleted"/>: the sender closed (ends an until-close body; anything else short is incomplete).
    /// </summary>
    public Http1BodyStatus Read(in ReadOnlySequence<byte> input, bool isCompleted, IBufferWriter<byte>? data, out SequencePosition consumed)
    {
        switch (_kind)
        {
            case Http1BodyKind.None:
                consumed = input.Start;
                return Http1BodyStatus.Complete;
            case Http1BodyKind.UntilClose:
                Copy(input, data);
                consumed = input.End;
                return isCompleted ? Http1BodyStatus.Complete : Http1BodyStatus.NeedMoreData;
            case Http1BodyKind.ContentLength:
                var take = Math.Min(_remaining, input.Length);
                Copy(input.Slice(0, take), data);
                _remaining -= take;
                consumed = input.GetPosition(take);
                return _remaining == 0 ? Http1BodyStatus.Complete : Http1BodyStatus.NeedMoreData;
            default:
                return ReadChunked(input, data, out consumed);
        }
    }

    private Http1BodyStatus ReadChunked(in ReadOnlySequence<byte> input, IBufferWriter<byte>? data, out SequencePosition consumed)
    {
        var reader = new SequenceReader<byte>(input);
        while (_state != State.Done)
        {
            if (_state == State.Data)
            {
                var take = Math.Min(_remaining, reader.Remaining);
                if (take == 0)
                {
                    break;
                }
                Copy(reader.UnreadSequence.Slice(0, take), data);
                reader.Advance(take);
                _remaining -= take;
                if (_remaining == 0)
                {
                    _state = State.DataCr;
                }
                continue;
            }
            if (!reader.TryRead(out var b))
            {
                break;
            }
            var refusal = Step(b);
            if (refusal != Http1Refusal.None)
            {
                Refusal = refusal;
                consumed = reader.Position;
                return Http1BodyStatus.Refused;
            }
        }
        consumed = reader.Position;
        return _state == State.Done ? Http1BodyStatus.Complete : Http1BodyStatus.NeedMoreData;
    }

    private Http1Refusal Step(byte b)
    {
        switch (_state)
        {
            case State.Size:
            case State.SizeDigits:
                if (Http1Syntax.HexDigits.Contains(b))
                {
                    if (++_digits > MaxChunkSizeDigits || _remaining > (int.MaxValue >> 4))
                    {
                        return Http1Refusal.InvalidChunkSize;
                    }
                    _remaining = (_remaining << 4) | (uint)(b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10);
                    _state = State.SizeDigits;
                    return Http1Refusal.None;
                }
                if (_state == State.Size)
                {
                    return Http1Refusal.InvalidChunkSize;
                }
                _digits = 0;
                if (b == (byte)';')
                {
                    _state = State.Extension;
                    return Http1Refusal.None;
                }
                if (b == (byte)'\r')
                {
                    _state = State.SizeLf;
                    return Http1Refusal.None;
                }
                return Http1Refusal.InvalidChunkSize;
            case State.Extension:
                // Kestrel skips an extension to its CR without looking at it; a bare LF or a control in it is refused
                // here, so no reader can end the line somewhere else.
                if (b == (byte)'\r')
                {
                    _state = State.SizeLf;
                    return Http1Refusal.None;
                }
                return b is < 0x20 and not (byte)'\t' or 0x7F ? Http1Refusal.InvalidChunkExtension : Http1Refusal.None;
            case State.SizeLf:
                if (b != (byte)'\n')
                {
                    return Http1Refusal.InvalidChunkExtension;
                }
                _state = _remaining == 0 ? State.TrailerLineStart : State.Data;
                return Http1Refusal.None;
            case State.DataCr:
                _state = State.DataLf;
                return b == (byte)'\r' ? Http1Refusal.None : Http1Refusal.InvalidChunkSuffix;
            case State.DataLf:
                _state = State.Size;
                return b == (byte)'\n' ? Http1Refusal.None : Http1Refusal.InvalidChunkSuffix;
            default:
                return Trailer(b);
        }
    }

    /// <summary>Trailer fields after the last chunk, held to the header section's rules and size.</summary>
    private Http1Refusal Trailer(byte b)
    {
        if (++_trailerBytes > _maxTrailerBytes)
        {
            return Http1Refusal.HeadTooLarge;
        }
        switch (_state)
        {
            case State.TrailerLineStart:
                if (b == (byte)'\r')
                {
                    _state = State.TrailerEndLf;
                    return Http1Refusal.None;
                }
                if (!Http1Syntax.Token.Contains(b))
                {
                    return Http1Refusal.InvalidTrailer;
                }
                if (++_trailerFields > _maxTrailerFields)
                {
                    return Http1Refusal.TooManyHeaders;
                }
                _state = State.TrailerName;
                return Http1Refusal.None;
            case State.TrailerName:
                if (b == (byte)':')
                {
                    _state = State.TrailerValue;
                    return Http1Refusal.None;
                }
                return Http1Syntax.Token.Contains(b) ? Http1Refusal.None : Http1Refusal.InvalidTrailer;
            case State.TrailerValue:
                if (b == (byte)'\r')
                {
                    _state = State.TrailerLineLf;
                    return Http1Refusal.None;
                }
                return b is 0 or (byte)'\n' ? Http1Refusal.InvalidTrailer : Http1Refusal.None;
            case State.TrailerLineLf:
                _state = State.TrailerLineStart;
                return b == (byte)'\n' ? Http1Refusal.None : Http1Refusal.InvalidTrailer;
            default: // TrailerEndLf
                _state = State.Done;
                return b == (byte)'\n' ? Http1Refusal.None : Http1Refusal.InvalidTrailer;
        }
    }

    private void Copy(in ReadOnlySequence<byte> bytes, IBufferWriter<byte>? data)
    {
        DataBytes += bytes.Length;
        if (data is null)
        {
            return;
        }
        foreach (var segment in bytes)
        {
            data.Write(segment.Span);
        }
    }
}
