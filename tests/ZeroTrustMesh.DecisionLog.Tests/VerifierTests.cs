namespace ZeroTrustMesh.DecisionLog.Tests;

/// <summary>What verification says, record by record, and what checkpoints add.</summary>
public sealed class VerifierTests
{
    [Fact]
    public void An_intact_log_is_proven_up_to_its_last_checkpoint()
    {
        using var log = new LogFixture(records: 120, segmentBytes: 4000);
        var result = log.Verify();
        Assert.True(result.IsProven, string.Join("\n", result.Problems));
        Assert.Equal(1, result.First);
        Assert.Equal(log.Last, result.Last);
        Assert.Equal(log.Last, result.LastCheckpoint!.Sequence);
        Assert.Equal(log.Checkpoints.Count, result.CheckpointsMatched);
        Assert.Equal(TestSvid.Workload, result.Workload);
    }

    [Fact]
    public void An_edited_record_is_named_by_its_sequence_number()
    {
        using var log = new LogFixture(records: 30, segmentBytes: 1 << 20);
        var path = log.Segments.Single();
        var lines = File.ReadAllLines(path);
        lines[9] = lines[9].Replace("\"status\":200", "\"status\":201", StringComparison.Ordinal);
        File.WriteAllLines(path, lines);
        var problem = Assert.Single(log.Verify().Problems);
        Assert.Equal(10, problem.Record);
        Assert.Contains("line 10", problem.Where, StringComparison.Ordinal);
        Assert.Contains("modified", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tail_cut_below_the_last_checkpoint_says_which_records_are_missing()
    {
        using var log = new LogFixture(records: 30, segmentBytes: 1 << 20);
        var path = log.Segments.Single();
        File.WriteAllLines(path, File.ReadAllLines(path)[..25]);
        var problem = Assert.Single(log.Verify().Problems);
        Assert.Contains($"records 26..{log.Last} are missing", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_a_checkpoint_nothing_is_proven_and_records_after_the_last_are_a_note()
    {
        using var log = new LogFixture(records: 50, segmentBytes: 1 << 20, checkpointEvery: 20, finalCheckpoint: false);
        Assert.Contains(log.Verify(checkpoints: []).Problems, p => p.Message.Contains("no signed checkpoint", StringComparison.Ordinal));
        var result = log.Verify();
        Assert.True(result.IsProven, string.Join("\n", result.Problems));
        Assert.Contains(result.Notes, n => n.Contains("come after the last checkpoint", StringComparison.Ordinal));
    }

    [Fact]
    public void A_checkpoint_signed_by_another_key_or_for_another_workload_does_not_count()
    {
        using var log = new LogFixture(records: 20, segmentBytes: 1 << 20);
        var genuine = log.Checkpoints[^1];
        using var other = new TestSvid("spiffe://cluster.local/ns/shop/sa/intruder");
        var wrongKey = genuine with { Certificates = [other.Certificate.RawData] };
        var problems = log.Verify(checkpoints: [wrongKey]).Problems;
        Assert.Contains(problems, p => p.Message.Contains("signed by a certificate for 'spiffe://cluster.local/ns/shop/sa/intruder'", StringComparison.Ordinal));
        var edited = genuine with { Sequence = genuine.Sequence - 1 };
        Assert.Contains(log.Verify(checkpoints: [edited]).Problems, p => p.Message.Contains("the signature does not match its fields", StringComparison.Ordinal));
    }

    [Fact]
    public void A_checkpoint_from_another_ca_does_not_count_when_a_bundle_is_given()
    {
        using var log = new LogFixture(records: 20, segmentBytes: 1 << 20);
        using var otherMesh = new TestSvid();
        var checkpoint = log.Checkpoints[^1];
        Assert.Null(checkpoint.Problem(log.Svid.Bundle));
        Assert.Contains("not a valid SVID of this mesh", checkpoint.Problem(otherMesh.Bundle), StringComparison.Ordinal);
    }

    [Fact]
    public void Checkpoints_read_back_from_json_lines_verify()
    {
        using var log = new LogFixture(records: 50, segmentBytes: 1 << 20);
        var read = Checkpoint.ReadLines(log.Checkpoints.Select(c => c.ToJson()));
        Assert.True(log.Verify(checkpoints: read).IsProven);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.ReadLines(["", "{\"workload\":1}"]));
        Assert.StartsWith("line 2:", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_single_segment_verifies_from_its_first_record()
    {
        using var log = new LogFixture(records: 100, segmentBytes: 3000);
        var last = log.Segments[^1];
        var result = LogVerifier.Verify([last], wholeLog: false, log.Checkpoints, null, log.Svid.Bundle);
        Assert.True(result.IsProven, string.Join("\n", result.Problems));
        Assert.Contains(result.Notes, n => n.StartsWith("verified from record", StringComparison.Ordinal));
        // The same segment as a whole log: the records before it are missing.
        Assert.Contains(LogVerifier.Verify([last], wholeLog: true, log.Checkpoints).Problems, p => p.Message.Contains("are missing", StringComparison.Ordinal));
    }
}
