using System.Buffers;
using System.Text;
using ZeroTrustMesh.Sidecar.Http1;

namespace ZeroTrustMesh.Sidecar.Tests.Http1;

/// <summary>How the hand-written framing ends a connection's bytes: every answer given, then why it stopped.</summary>
internal enum Http1End
{
    /// <summary>All bytes read as whole requests (or the last one closed the connection).</summary>
    Closed,

    /// <summary>Refused: the last answer is the refusal.</summary>
    Refused,

    /// <summary>The bytes ended inside a head or a body.</summary>
    Incomplete,

    /// <summary>A request the fast path leaves to Kestrel and YARP.</summary>
    Fallback,
}

/// <summary>
/// Runs the hand-written framing over a connection's bytes as a server would: head, body, answer, next request, until
/// a refusal, a close or the end, and reports what it saw in the same form as <see cref="KestrelOracle"/>.
/// </summary>
internal static class Http1Simulation
{
    public static (List<Exchange> Answers, Http1End End, Http1Refusal Refusal) Run(byte[] bytes, int[] splits)
    {
        var input = Segments.Of(bytes, splits);
        var answers = new List<Exchange>();
        using var head = new Http1RequestHead(Http1Limits.Sidecar);
        while (!input.IsEmpty)
        {
            switch (head.TryParse(input))
            {
                case Http1ParseStatus.NeedMoreData:
                    return (answers, Http1End.Incomplete, Http1Refusal.None);
                case Http1ParseStatus.Fallback:
                    return (answers, Http1End.Fallback, Http1Refusal.None);
                case Http1ParseStatus.Refused:
                    answers.Add(new Exchange(Http1Refusals.Status(head.Refusal), null));
                    return (answers, Http1End.Refused, head.Refusal);
            }
            // Kestrel counts trailers against what the head left of both header limits.
            var fieldBytes = head.Length - (head.Bytes.Span[..head.Length].IndexOf((byte)'\n') + 1);
            var body = new Http1Body(head.BodyKind, head.ContentLength, Http1Limits.Sidecar.MaxHeadersTotal + 2 - fieldBytes, Http1Limits.Sidecar.MaxHeaderCount - head.FieldCount);
            var data = new ArrayBufferWriter<byte>();
            var rest = input.Slice(head.Length);
            switch (body.Read(rest, isCompleted: true, data, out var consumed))
            {
                case Http1BodyStatus.NeedMoreData:
                    return (answers, Http1End.Incomplete, Http1Refusal.None);
                case Http1BodyStatus.Refused:
                    answers.Add(new Exchange(Http1Refusals.Status(body.Refusal), null));
                    return (answers, Http1End.Refused, body.Refusal);
            }
            var span = head.Bytes.Span;
            var fields = new List<(string, string)>();
            var close = head.IsHttp10;
            foreach (var field in head.Fields)
            {
                var name = Encoding.ASCII.GetString(span.Slice(field.NameStart, field.NameLength));
                var value = Encoding.UTF8.GetString(span.Slice(field.ValueStart, field.ValueLength));
                fields.Add((name, value));
                if (name.Equals("connection", StringComparison.OrdinalIgnoreCase))
                {
                    var tokens = value.Split(',', StringSplitOptions.TrimEntries);
                    close = tokens.Contains("close", StringComparer.OrdinalIgnoreCase) || (head.IsHttp10 && !tokens.Contains("keep-alive", StringComparer.OrdinalIgnoreCase));
                }
            }
            answers.Add(new Exchange(200, Exchange.Report(Encoding.ASCII.GetString(head.MethodBytes), Encoding.UTF8.GetString(head.TargetBytes), fields, data.WrittenSpan.ToArray())));
            input = rest.Slice(consumed);
            if (close)
            {
                break;
            }
        }
        return (answers, Http1End.Closed, Http1Refusal.None);
    }
}

/// <summary>A byte array as a multi-segment sequence, as a pipe hands over data that arrived in several reads.</summary>
internal sealed class Segments : ReadOnlySequenceSegment<byte>
{
    private Segments(ReadOnlyMemory<byte> memory, long runningIndex)
    {
        Memory = memory;
        RunningIndex = runningIndex;
    }

    public static ReadOnlySequence<byte> Of(byte[] bytes, IEnumerable<int> splits)
    {
        var cuts = splits.Where(s => s > 0 && s < bytes.Length).Distinct().Order().ToList();
        if (cuts.Count == 0)
        {
            return new ReadOnlySequence<byte>(bytes);
        }
        var first = new Segments(bytes.AsMemory(0, cuts[0]), 0);
        var last = first;
        for (var i = 0; i < cuts.Count; i++)
        {
            var end = i + 1 < cuts.Count ? cuts[i + 1] : bytes.Length;
            var next = new Segments(bytes.AsMemory(cuts[i], end - cuts[i]), cuts[i]);
            last.Next = next;
            last = next;
        }
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }
}
