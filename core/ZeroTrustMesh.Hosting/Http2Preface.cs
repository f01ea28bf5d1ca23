using System.Buffers;

namespace ZeroTrustMesh.Hosting;

/// <summary>
/// Peeking at the first bytes of a cleartext connection: is it (so far) the HTTP/2 client preface, a CONNECT, ...?
/// One place for the comparison every listener that tells protocols apart needs.
/// </summary>
public static class BytePrefix
{
    /// <summary>True when <paramref name="buffer"/> starts with all of <paramref name="prefix"/>; false as soon as it cannot;
    /// null while the bytes so far are a proper prefix of it (wait for more).</summary>
    public static bool? Match(in ReadOnlySequence<byte> buffer, ReadOnlySpan<byte> prefix)
    {
        var length = (int)Math.Min(buffer.Length, prefix.Length);
        Span<byte> head = stackalloc byte[length];
        buffer.Slice(0, length).CopyTo(head);
        if (!head.SequenceEqual(prefix[..length]))
        {
            return false;
        }
        return length == prefix.Length ? true : null;
    }
}

/// <summary>The HTTP/2 client connection preface (RFC 9113 §3.4), which an h2c prior-knowledge client sends first.</summary>
public static class Http2Preface
{
    public static ReadOnlySpan<byte> Bytes => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    /// <summary>True: the whole preface; false: not HTTP/2 prior knowledge; null: undecided, wait for more bytes.</summary>
    public static bool? Match(in ReadOnlySequence<byte> buffer) => BytePrefix.Match(buffer, Bytes);
}
