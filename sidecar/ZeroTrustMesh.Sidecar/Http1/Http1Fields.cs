using System.Text;
using System.Text.Unicode;

namespace ZeroTrustMesh.Sidecar.Http1;

/// <summary>Where one field line's name and value (OWS trimmed) sit in the head's bytes.</summary>
internal readonly record struct Http1Field(int NameStart, int NameLength, int ValueStart, int ValueLength);

/// <summary>What a parse got to: a whole head, not yet, refused (see the refusal), or left to the YARP path.</summary>
internal enum Http1ParseStatus : byte
{
    Complete,
    NeedMoreData,
    Refused,

    /// <summary>Valid as far as read, but not a request the fast path handles (upgrade, CONNECT, absolute-form,
    /// Expect: 100-continue, transfer codings other than chunked): Kestrel and YARP take it.</summary>
    Fallback,
}

/// <summary>
/// The field section both heads share (RFC 9112 §5): a line is <c>token ":" OWS value OWS CRLF</c>. Refused as Kestrel
/// refuses them: a bare LF, a line starting with whitespace (obs-fold), a name that is not a token (whitespace before
/// the colon included), a value holding NUL or CR or bytes that are not UTF-8, more fields or bytes than the limits.
/// </summary>
internal static class Http1FieldSection
{
    /// <summary>
    /// Parses field lines from <paramref name="start"/> to the empty line. <paramref name="end"/> is the index after
    /// the empty line's LF. <paramref name="maxBytes"/> bounds the lines with their CRLFs, the final CRLF included.
    /// </summary>
    public static (Http1ParseStatus Status, Http1Refusal Refusal) Parse(ReadOnlySpan<byte> s, int start, Http1Field[] fields, int maxBytes, out int count, out int end)
    {
        count = 0;
        end = 0;
        var p = start;
        while (true)
        {
            var allowance = maxBytes - (p - start);
            if (p >= s.Length)
            {
                return NeedMore(s.Length - start, maxBytes, allowance);
            }
            var b = s[p];
            if (b == (byte)'\r')
            {
                if (p + 1 >= s.Length)
                {
                    return NeedMore(s.Length - start, maxBytes, allowance);
                }
                if (s[p + 1] != (byte)'\n')
                {
                    return Refuse(Http1Refusal.InvalidHeaderName);
                }
                if (allowance < 2)
                {
                    return Refuse(Http1Refusal.HeadTooLarge);
                }
                end = p + 2;
                return (Http1ParseStatus.Complete, Http1Refusal.None);
            }
            if (b == (byte)'\n')
            {
                return Refuse(Http1Refusal.BareLineFeed);
            }
            if (Http1Syntax.IsOws(b))
            {
                return Refuse(Http1Refusal.ObsFold);
            }
            var rest = s[p..];
            var lf = rest[..Math.Min(rest.Length, Math.Max(allowance, 0))].IndexOf((byte)'\n');
            if (lf < 0)
            {
                return rest.Length >= allowance ? Refuse(Http1Refusal.HeadTooLarge) : (Http1ParseStatus.NeedMoreData, Http1Refusal.None);
            }
            if (rest[lf - 1] != (byte)'\r')
            {
                return Refuse(Http1Refusal.BareLineFeed);
            }
            var line = rest[..(lf - 1)];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0 || line[..colon].ContainsAnyExcept(Http1Syntax.Token))
            {
                return Refuse(Http1Refusal.InvalidHeaderName);
            }
            var raw = line[(colon + 1)..];
            var value = Http1Syntax.TrimOws(raw);
            if (value.ContainsAny(Http1Syntax.NotInFieldValue) || !Utf8.IsValid(value))
            {
                return Refuse(Http1Refusal.InvalidHeaderValue);
            }
            if (count == fields.Length)
            {
                return Refuse(Http1Refusal.TooManyHeaders);
            }
            var valueStart = p + colon + 1 + LeadingOws(raw);
            fields[count++] = new Http1Field(p, colon, valueStart, value.Length);
            p += lf + 1;
        }

        static (Http1ParseStatus, Http1Refusal) NeedMore(int read, int maxBytes, int allowance) =>
            read >= maxBytes + 1 || allowance <= 0 ? Refuse(Http1Refusal.HeadTooLarge) : (Http1ParseStatus.NeedMoreData, Http1Refusal.None);
    }

    private static int LeadingOws(ReadOnlySpan<byte> raw)
    {
        var n = 0;
        while (n < raw.Length && Http1Syntax.IsOws(raw[n]))
        {
            n++;
        }
        return n;
    }

    private static (Http1ParseStatus, Http1Refusal) Refuse(Http1Refusal refusal) => (Http1ParseStatus.Refused, refusal);

    public static bool NameIs(ReadOnlySpan<byte> head, in Http1Field field, ReadOnlySpan<byte> lowerName) =>
        field.NameLength == lowerName.Length && Ascii.EqualsIgnoreCase(head.Slice(field.NameStart, field.NameLength), lowerName);

    public static ReadOnlySpan<byte> Value(ReadOnlySpan<byte> head, in Http1Field field) => head.Slice(field.ValueStart, field.ValueLength);
}
