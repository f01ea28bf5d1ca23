using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace ZeroTrustMesh.DecisionLog.Tests;

/// <summary>
/// Seeded random tampering with a real log (several segments, checkpoints every 40 records and at the end): byte flips,
/// deleted, swapped, duplicated, inserted and edited records, cut and deleted segments, renamed segments — each both
/// naively and by an attacker who then re-chains every hash, renumbers and renames so the log is consistent again
/// (only the signed checkpoints, which they cannot forge, stand in the way). Every case must fail verification.
/// </summary>
public sealed partial class TamperFuzzTests(ITestOutputHelper output)
{
    private const int Seed = 19_04;
    private const int CasesPerKind = 100;

    private enum Tamper
    {
        FlipByte,
        EditFieldForged,
        DeleteRecord,
        DeleteRecordForged,
        SwapRecords,
        SwapRecordsForged,
        DuplicateRecord,
        DuplicateRecordForged,
        InsertRecordForged,
        CutSegmentBytes,
        DropTailRecords,
        DropTailRecordsForged,
        DeleteSegment,
        SwapSegments,
    }

    [Fact]
    public void Every_tampering_is_caught()
    {
        using var log = new LogFixture(records: 160, segmentBytes: 3000, checkpointEvery: 40);
        var original = log.Segments.Select(p => (Name: Path.GetFileName(p), Bytes: File.ReadAllBytes(p))).ToList();
        Assert.True(original.Count >= 5, $"the log should span several segments, it has {original.Count}");
        var intact = log.Verify();
        Assert.True(intact.IsProven, string.Join("\n", intact.Problems));

        var random = new Random(Seed);
        var caught = new Dictionary<Tamper, int>();
        var workDir = Directory.CreateTempSubdirectory("ztm-fuzz-").FullName;
        try
        {
            foreach (var kind in Enum.GetValues<Tamper>())
            {
                for (var i = 0; i < CasesPerKind; i++)
                {
                    var (segments, description) = Apply(kind, original, random);
                    var caseDir = Path.Combine(workDir, $"{kind}-{i}");
                    Directory.CreateDirectory(caseDir);
                    foreach (var (name, bytes) in segments)
                    {
                        File.WriteAllBytes(Path.Combine(caseDir, name), bytes);
                    }
                    var result = log.Verify(caseDir, chainToBundle: false); // signatures still checked; chaining them is VerifierTests'
                    Assert.False(result.IsProven, $"not caught: {kind} case {i} (seed {Seed}): {description}");
                    caught[kind] = caught.GetValueOrDefault(kind) + 1;
                    Directory.Delete(caseDir, recursive: true);
                }
            }
        }
        finally
        {
            Directory.Delete(workDir, recursive: true);
        }
        output.WriteLine(string.Join(", ", caught.Select(c => $"{c.Key} {c.Value}/{CasesPerKind}")));
        Assert.Equal(Enum.GetValues<Tamper>().Length * CasesPerKind, caught.Values.Sum());
    }

    private static (List<(string Name, byte[] Bytes)> Segments, string Description) Apply(Tamper kind, List<(string Name, byte[] Bytes)> original, Random random)
    {
        var segments = original.Select(s => (s.Name, Bytes: (byte[])s.Bytes.Clone())).ToList();
        var lines = original.SelectMany(s => Lines(s.Bytes)).ToList();
        switch (kind)
        {
            case Tamper.FlipByte:
            {
                var s = random.Next(segments.Count);
                var at = random.Next(segments[s].Bytes.Length);
                var was = segments[s].Bytes[at];
                byte now;
                do
                {
                    now = (byte)random.Next(256);
                }
                while (now == was);
                segments[s].Bytes[at] = now;
                return (segments, $"{segments[s].Name} byte {at}: {was} -> {now}");
            }
            case Tamper.EditFieldForged:
            {
                var i = RandomDecision(lines, random);
                var edited = EditPath().Replace(lines[i], m => $"\"path\":\"/admin/{random.Next(1000)}\"", 1);
                edited = edited == lines[i] ? lines[i].Replace("\"status\":", "\"status\":1", StringComparison.Ordinal) : edited;
                lines[i] = edited;
                return (Forge(lines), $"record {i + 1} edited, chain re-hashed");
            }
            case Tamper.DeleteRecord:
            case Tamper.DeleteRecordForged:
            {
                var i = random.Next(lines.Count);
                lines.RemoveAt(i);
                return (kind == Tamper.DeleteRecord ? Split(lines, original) : Forge(lines), $"record {i + 1} deleted");
            }
            case Tamper.SwapRecords:
            case Tamper.SwapRecordsForged:
            {
                var a = random.Next(lines.Count);
                var b = random.Next(2) == 0 ? Math.Min(a + 1, lines.Count - 1) : random.Next(lines.Count);
                if (a == b)
                {
                    b = a == 0 ? 1 : a - 1;
                }
                (lines[a], lines[b]) = (lines[b], lines[a]);
                return (kind == Tamper.SwapRecords ? Split(lines, original) : Forge(lines), $"records {a + 1} and {b + 1} swapped");
            }
            case Tamper.DuplicateRecord:
            case Tamper.DuplicateRecordForged:
            {
                var i = random.Next(lines.Count);
                lines.Insert(i, lines[i]);
                return (kind == Tamper.DuplicateRecord ? Split(lines, original) : Forge(lines), $"record {i + 1} duplicated");
            }
            case Tamper.InsertRecordForged:
            {
                var i = random.Next(1, lines.Count + 1);
                var template = lines[RandomDecision(lines, random)];
                lines.Insert(i, EditPath().Replace(template, "\"path\":\"/inserted\"", 1));
                return (Forge(lines), $"a record inserted before record {i + 1}, chain re-hashed");
            }
            case Tamper.CutSegmentBytes:
            {
                var s = random.Next(segments.Count);
                var keep = random.Next(segments[s].Bytes.Length);
                segments[s] = (segments[s].Name, segments[s].Bytes[..keep]);
                if (keep == 0)
                {
                    segments.RemoveAt(s); // an emptied file: gone altogether, as a careful attacker would leave it
                }
                return (segments, $"segment {s} cut to {keep} bytes");
            }
            case Tamper.DropTailRecords:
            case Tamper.DropTailRecordsForged:
            {
                var drop = random.Next(1, 30);
                lines.RemoveRange(lines.Count - drop, drop);
                return (kind == Tamper.DropTailRecords ? Split(lines, original) : Forge(lines), $"the last {drop} records dropped");
            }
            case Tamper.DeleteSegment:
            {
                var s = random.Next(segments.Count);
                var name = segments[s].Name;
                segments.RemoveAt(s);
                return (segments, $"segment {name} deleted");
            }
            default:
            {
                var a = random.Next(segments.Count);
                var b = (a + 1 + random.Next(segments.Count - 1)) % segments.Count;
                (segments[a], segments[b]) = ((segments[a].Name, segments[b].Bytes), (segments[b].Name, segments[a].Bytes));
                return (segments, $"segments {a} and {b} swapped under each other's names");
            }
        }
    }

    private static List<string> Lines(byte[] bytes) => [.. Encoding.UTF8.GetString(bytes).Split('\n', StringSplitOptions.RemoveEmptyEntries)];

    private static int RandomDecision(List<string> lines, Random random)
    {
        while (true)
        {
            var i = random.Next(lines.Count);
            if (lines[i].Contains("\"kind\":\"decision\"", StringComparison.Ordinal))
            {
                return i;
            }
        }
    }

    /// <summary>The lines back into the original segment files, as many lines each as before (the last takes the rest).</summary>
    private static List<(string Name, byte[] Bytes)> Split(List<string> lines, List<(string Name, byte[] Bytes)> original)
    {
        var result = new List<(string, byte[])>();
        var at = 0;
        for (var s = 0; s < original.Count && at < lines.Count; s++)
        {
            var count = s == original.Count - 1 ? lines.Count - at : Math.Min(Lines(original[s].Bytes).Count, lines.Count - at);
            result.Add((original[s].Name, Encoding.UTF8.GetBytes(string.Concat(lines.Skip(at).Take(count).Select(l => l + "\n")))));
            at += count;
        }
        return result;
    }

    /// <summary>
    /// What an attacker with the disk but not the SVID key can do at best: renumber every record, re-chain every hash,
    /// start a segment at each open record and name it (and its open record) after its first sequence number.
    /// </summary>
    private static List<(string Name, byte[] Bytes)> Forge(List<string> lines)
    {
        using var sha256 = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var previous = RecordFormat.Genesis;
        var segments = new List<(string Name, StringBuilder Text)>();
        for (var i = 0; i < lines.Count; i++)
        {
            var seq = i + 1;
            var canonical = lines[i][..^RecordFormat.HashSuffixLength] + "}";
            canonical = SeqMember().Replace(canonical, $"{{\"seq\":{seq},", 1);
            var open = canonical.Contains("\"kind\":\"open\"", StringComparison.Ordinal);
            if (open || segments.Count == 0)
            {
                segments.Add((ChainWriter.SegmentName(seq), new StringBuilder()));
                canonical = SegmentMember().Replace(canonical, $"\"segment\":\"{ChainWriter.SegmentName(seq)}\"", 1);
            }
            canonical = canonical[..^66] + previous + "\"}";
            sha256.AppendData(Convert.FromHexString(previous));
            sha256.AppendData(Encoding.UTF8.GetBytes(canonical));
            previous = Convert.ToHexStringLower(sha256.GetHashAndReset());
            segments[^1].Text.Append(canonical[..^1]).Append(",\"hash\":\"").Append(previous).Append("\"}\n");
        }
        return [.. segments.Select(s => (s.Name, Encoding.UTF8.GetBytes(s.Text.ToString())))];
    }

    [GeneratedRegex("\"path\":\"[^\"]*\"")]
    private static partial Regex EditPath();

    [GeneratedRegex("^\\{\"seq\":\\d+,")]
    private static partial Regex SeqMember();

    [GeneratedRegex("\"segment\":\"[^\"]*\"")]
    private static partial Regex SegmentMember();

    [Fact]
    public void A_forged_log_that_changes_nothing_is_proven()
    {
        // The forger itself must be faithful, or the cases above would be caught for the wrong reason.
        using var log = new LogFixture(records: 100, segmentBytes: 3000);
        var lines = log.Segments.SelectMany(p => Lines(File.ReadAllBytes(p))).ToList();
        var dir = Directory.CreateTempSubdirectory("ztm-forge-").FullName;
        try
        {
            foreach (var (name, bytes) in Forge(lines))
            {
                File.WriteAllBytes(Path.Combine(dir, name), bytes);
            }
            var result = log.Verify(dir);
            Assert.True(result.IsProven, string.Join("\n", result.Problems));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
