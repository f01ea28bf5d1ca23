using System.Security.Cryptography;
using System.Text;

namespace ZeroTrustMesh.DecisionLog.Tests;

/// <summary>The chain as written: format, hashes, segments, continuing after a restart and after a crash mid-line.</summary>
public sealed class ChainTests
{
    [Fact]
    public void A_record_is_one_json_line_hashed_over_the_previous_hash_and_its_canonical_bytes()
    {
        using var log = new LogFixture(records: 3, segmentBytes: 1 << 20);
        var lines = File.ReadAllLines(log.Segments.Single());
        Assert.Equal(4, lines.Length); // open + 3 (the fixture's record 51 is a gap; not reached here)
        Assert.StartsWith("{\"seq\":1,", lines[0], StringComparison.Ordinal);
        Assert.Contains("\"kind\":\"open\"", lines[0], StringComparison.Ordinal);
        Assert.Contains($"\"prev\":\"{RecordFormat.Genesis}\"", lines[0], StringComparison.Ordinal);
        Assert.Equal("{\"seq\":2,\"time\":\"2026-12-06T12:00:00+00:00\",\"kind\":\"decision\",\"caller\":\"spiffe://cluster.local/ns/shop/sa/caller0\",\"method\":\"POST\",\"path\":\"/orders/0\",\"port\":8080,\"status\":403,\"decision\":\"denied\",\"reason\":\"RBAC: access denied: no ALLOW policy matched\",\"prev\":\"",
            lines[1][..lines[1].IndexOf("\"prev\":\"", StringComparison.Ordinal)] + "\"prev\":\"");
        Assert.Contains("\"decision\":\"allowed\",\"policy\":\"shop/orders-readers\",\"rule\":1,", lines[2], StringComparison.Ordinal);

        // Recompute by hand, as the README tells an auditor to: SHA-256(previous hash bytes ‖ line without its hash member).
        var previous = new byte[32];
        foreach (var line in lines)
        {
            var canonical = line[..^RecordFormat.HashSuffixLength] + "}";
            Assert.Contains($"\"prev\":\"{Convert.ToHexStringLower(previous)}\"}}", canonical, StringComparison.Ordinal);
            previous = SHA256.HashData([.. previous, .. Encoding.UTF8.GetBytes(canonical)]);
            Assert.EndsWith($",\"hash\":\"{Convert.ToHexStringLower(previous)}\"}}", line, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Segments_roll_at_the_size_limit_and_each_begins_with_an_open_record_named_by_its_first_sequence()
    {
        using var log = new LogFixture(records: 100, segmentBytes: 2000);
        Assert.True(log.Segments.Count > 5);
        foreach (var path in log.Segments)
        {
            var first = File.ReadLines(path).First();
            Assert.Contains("\"kind\":\"open\"", first, StringComparison.Ordinal);
            Assert.StartsWith($"{{\"seq\":{ChainWriter.FirstSequenceOf(Path.GetFileName(path))},", first, StringComparison.Ordinal);
            Assert.Contains($"\"chain\":\"{log.Chain}\"", first, StringComparison.Ordinal);
            Assert.True(new FileInfo(path).Length < 2000 + 400, $"{path}: {new FileInfo(path).Length} bytes");
        }
        Assert.True(log.Verify().IsProven);
    }

    [Fact]
    public void Reopening_continues_the_chain_in_a_new_segment()
    {
        using var log = new LogFixture(records: 10, segmentBytes: 1 << 20);
        using (var writer = ChainWriter.Open(log.Directory, TestSvid.Workload, 1 << 20))
        {
            Assert.Equal(log.Chain, writer.Chain);
            Assert.Equal(log.Last, writer.Sequence);
            writer.Append(LogFixture.Sample(1, LogFixture.Start.AddHours(1)));
            writer.Flush();
            log.Checkpoints.Add(log.Svid.Sign(writer, LogFixture.Start.AddHours(1)));
            Assert.Equal(log.Last + 2, writer.Sequence); // open + the decision
        }
        Assert.Equal(2, log.Segments.Count);
        var result = log.Verify();
        Assert.True(result.IsProven, string.Join("\n", result.Problems));
        Assert.Equal(log.Last + 2, result.Last);
    }

    [Fact]
    public void A_line_torn_by_a_crash_is_cut_on_reopening_and_the_open_record_says_how_many_bytes()
    {
        using var log = new LogFixture(records: 10, segmentBytes: 1 << 20);
        File.AppendAllText(log.Segments[^1], "{\"seq\":12,\"time\":\"2026-12-06T12:00:01+00:00\",\"kind\":\"dec");
        using (var writer = ChainWriter.Open(log.Directory, TestSvid.Workload, 1 << 20))
        {
            Assert.Equal(log.Last, writer.Sequence);
            writer.Append(LogFixture.Sample(1, LogFixture.Start.AddHours(1)));
            writer.Flush();
            log.Checkpoints.Add(log.Svid.Sign(writer, LogFixture.Start.AddHours(1)));
        }
        Assert.Contains("\"truncated\":56,", File.ReadLines(log.Segments[^1]).First(), StringComparison.Ordinal);
        var result = log.Verify();
        Assert.True(result.IsProven, string.Join("\n", result.Problems));
    }

    [Fact]
    public void A_gap_is_a_record_of_its_own_and_verification_says_so()
    {
        using var log = new LogFixture(records: 60, segmentBytes: 1 << 20);
        var result = log.Verify();
        Assert.True(result.IsProven, string.Join("\n", result.Problems));
        Assert.Contains(result.Notes, n => n.Contains("3 decision(s) were not logged here", StringComparison.Ordinal));
    }

    [Fact]
    public void An_unreadable_last_line_refuses_to_continue_the_chain()
    {
        using var log = new LogFixture(records: 5, segmentBytes: 1 << 20);
        File.AppendAllText(log.Segments[^1], "not a record\n");
        var e = Assert.Throws<InvalidDataException>(() => ChainWriter.Open(log.Directory, TestSvid.Workload, 1 << 20));
        Assert.Contains("the last line", e.Message, StringComparison.Ordinal);
    }
}
