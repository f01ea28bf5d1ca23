using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace ZeroTrustMesh.DecisionLog;

/// <summary>
/// Appends records to the hash chain in a directory of segments, <c>decisions-&lt;first sequence, 20 digits&gt;.jsonl</c>,
/// each begun with an open record and closed when it reaches the size limit. Not thread-safe: one writer owns it (the
/// sidecar's background writer). Opening a directory that has segments continues their chain in a new segment; a line
/// a crash left half-written (no newline) is cut off first, and the open record says how many bytes that was.
/// </summary>
public sealed class ChainWriter : IDisposable
{
    public const string SegmentPrefix = "decisions-";
    public const string SegmentExtension = ".jsonl";

    private readonly string _directory;
    private readonly string _workload;
    private readonly long _maxSegmentBytes;
    private readonly ArrayBufferWriter<byte> _canonical = new(1024);
    private readonly ArrayBufferWriter<byte> _lines = new(64 * 1024);
    private readonly Utf8JsonWriter _json;
    private readonly IncrementalHash _sha256 = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly byte[] _hash = new byte[RecordFormat.HashBytes];
    private FileStream? _segment;
    private long _segmentBytes; // written to the file so far (FileStream.Length would cost a system call per record)
    private long _truncated;

    private ChainWriter(string directory, string workload, long maxSegmentBytes, string chain, long sequence, byte[] hash, long truncated)
    {
        _directory = directory;
        _workload = workload;
        _maxSegmentBytes = maxSegmentBytes;
        _json = new Utf8JsonWriter(_canonical, new JsonWriterOptions { SkipValidation = true });
        Chain = chain;
        Sequence = sequence;
        hash.CopyTo(_hash, 0);
        _truncated = truncated;
    }

    /// <summary>This log's id: random when the directory was first used, the same in every segment after.</summary>
    public string Chain { get; }

    /// <summary>The last record's sequence number (0 before the first).</summary>
    public long Sequence { get; private set; }

    /// <summary>The last record's hash, hex.</summary>
    public string Hash => Convert.ToHexStringLower(_hash);

    /// <summary>The file name of the segment the last record is in.</summary>
    public string Segment { get; private set; } = "";

    /// <summary>Bytes of records written and not yet flushed to the file.</summary>
    public int Buffered => _lines.WrittenCount;

    /// <exception cref="IOException">The directory cannot be created or read.</exception>
    /// <exception cref="InvalidDataException">The last segment's last record cannot be read: the chain cannot be continued.</exception>
    public static ChainWriter Open(string directory, string workload, long maxSegmentBytes)
    {
        Directory.CreateDirectory(directory);
        var segments = Segments(directory);
        long truncated = 0;
        while (segments.Count > 0)
        {
            var last = segments[^1];
            truncated += CutTornLine(last);
            if (new FileInfo(last).Length > 0)
            {
                break;
            }
            File.Delete(last); // created, but a crash came before its open record was complete: no record to keep
            segments.RemoveAt(segments.Count - 1);
        }
        if (segments.Count == 0)
        {
            return new ChainWriter(directory, workload, maxSegmentBytes, Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)), 0, new byte[RecordFormat.HashBytes], truncated);
        }
        var (first, lastLine) = FirstAndLastLines(segments[^1]);
        var canonical = new byte[lastLine.Length];
        var open = RecordFormat.Parse(first, new byte[first.Length], out _, out var problem)
            ?? throw new InvalidDataException($"{segments[^1]}: the first line: {problem}");
        var tail = RecordFormat.Parse(lastLine, canonical, out _, out problem)
            ?? throw new InvalidDataException($"{segments[^1]}: the last line: {problem}");
        return new ChainWriter(directory, workload, maxSegmentBytes, open.Chain!, tail.Sequence, Convert.FromHexString(tail.Hash), truncated);
    }

    /// <summary>The segment files of a directory, oldest first (their names sort by first sequence number).</summary>
    public static List<string> Segments(string directory) =>
        [.. Directory.GetFiles(directory, SegmentPrefix + "*" + SegmentExtension).Order(StringComparer.Ordinal)];

    public static string SegmentName(long firstSequence) => SegmentPrefix + firstSequence.ToString("D20", CultureInfo.InvariantCulture) + SegmentExtension;

    /// <summary>The first sequence number a segment's name says, or null when it is not a segment's name.</summary>
    public static long? FirstSequenceOf(string fileName) =>
        fileName.StartsWith(SegmentPrefix, StringComparison.Ordinal) && fileName.EndsWith(SegmentExtension, StringComparison.Ordinal)
        && long.TryParse(fileName.AsSpan(SegmentPrefix.Length, fileName.Length - SegmentPrefix.Length - SegmentExtension.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            ? n : null;

    public void Append(in Decision decision) => Append(RecordKind.Decision, decision.Time, decision, 0);

    /// <summary>Records that <paramref name="lost"/> decisions were not logged, here.</summary>
    public void AppendGap(DateTimeOffset time, long lost) => Append(RecordKind.Gap, time, default, lost);

    private void Append(RecordKind kind, DateTimeOffset time, in Decision decision, long lost)
    {
        if (_segment is null || _segmentBytes + _lines.WrittenCount >= _maxSegmentBytes)
        {
            StartSegment(time);
        }
        WriteRecord(kind, time, decision, lost, null);
    }

    /// <summary>Writes what is buffered to the segment file; <paramref name="durable"/> also asks the disk to keep it (fsync).</summary>
    public void Flush(bool durable = false)
    {
        if (_segment is null)
        {
            return;
        }
        WriteOut();
        _segment.Flush(durable);
    }

    private void StartSegment(DateTimeOffset time)
    {
        Flush(durable: true);
        _segment?.Dispose();
        Segment = SegmentName(Sequence + 1);
        _segment = new FileStream(Path.Combine(_directory, Segment), FileMode.CreateNew, FileAccess.Write, FileShare.Read, bufferSize: 0);
        _segmentBytes = 0;
        WriteRecord(RecordKind.Open, time, default, 0, Segment);
        _truncated = 0;
    }

    private void WriteRecord(RecordKind kind, DateTimeOffset time, in Decision decision, long lost, string? segment)
    {
        _canonical.ResetWrittenCount();
        _json.Reset(_canonical);
        RecordFormat.WriteCanonical(_json, Sequence + 1, time, kind, decision, lost, Chain, _workload, segment, _truncated, _hash);
        _json.Flush();
        RecordFormat.Hash(_sha256, _hash, _canonical.WrittenSpan, _hash);
        RecordFormat.WriteLine(_lines, _canonical.WrittenSpan, _hash);
        Sequence++;
        if (_lines.WrittenCount >= 60 * 1024)
        {
            WriteOut();
        }
    }

    private void WriteOut()
    {
        if (_lines.WrittenCount > 0)
        {
            _segment!.Write(_lines.WrittenSpan);
            _segmentBytes += _lines.WrittenCount;
            _lines.ResetWrittenCount();
        }
    }

    /// <summary>Cuts a last line without its newline (a crash mid-write); how many bytes that was.</summary>
    private static long CutTornLine(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        if (file.Length == 0)
        {
            return 0;
        }
        var tail = new byte[(int)Math.Min(file.Length, 1 << 20)];
        file.Seek(-tail.Length, SeekOrigin.End);
        file.ReadExactly(tail);
        if (tail[^1] == (byte)'\n')
        {
            return 0;
        }
        var lastNewline = Array.LastIndexOf(tail, (byte)'\n');
        var keep = lastNewline < 0 ? file.Length - tail.Length : file.Length - tail.Length + lastNewline + 1;
        var cut = file.Length - keep;
        file.SetLength(keep);
        return cut;
    }

    private static (byte[] First, byte[] Last) FirstAndLastLines(string path)
    {
        byte[]? first = null, last = null;
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            var bytes = Encoding.UTF8.GetBytes(line);
            first ??= bytes;
            last = bytes;
        }
        return (first!, last!);
    }

    public void Dispose()
    {
        Flush(durable: true);
        _segment?.Dispose();
        _json.Dispose();
        _sha256.Dispose();
    }
}
