using System.Buffers;
using System.Text;

namespace ZeroTrustMesh.Hosting.Tests;

public sealed class PrefaceTests
{
    [Theory]
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true)]
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\u0004", true)]
    [InlineData("PRI * HTTP/2", null)]
    [InlineData("", null)]
    [InlineData("GET / HTTP/1.1\r\n", false)]
    [InlineData("PRI * HTTP/1.1", false)]
    public void The_preface_is_matched_whole_refused_early_or_awaited(string bytes, bool? expected)
    {
        Assert.Equal(expected, Http2Preface.Match(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(bytes))));
    }

    [Fact]
    public void A_preface_split_over_segments_is_matched()
    {
        var preface = Http2Preface.Bytes.ToArray();
        var first = new Segment(preface.AsMemory(0, 5));
        var last = first.Append(preface.AsMemory(5));

        Assert.True(Http2Preface.Match(new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length)));
    }

    [Theory]
    [InlineData("CONNECT orders:5432 HTTP/1.1", true)]
    [InlineData("CONN", null)]
    [InlineData("CONNEX", false)]
    public void Any_prefix_works_the_same_way(string bytes, bool? expected)
    {
        Assert.Equal(expected, BytePrefix.Match(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(bytes)), "CONNECT "u8));
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
