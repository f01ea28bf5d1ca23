using System.Globalization;
using System.Security.Cryptography;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.DecisionLog;

/// <summary>One thing wrong with a log: the record it is at (when known), the file and line, and what.</summary>
public sealed record LogProblem(long? Record, string Where, string Message)
{
    public override string ToString() => Record is { } n ? $"record {n} ({Where}): {Message}" : $"{Where}: {Message}";
}

/// <summary>What <see cref="LogVerifier"/> found: problems (none means proven up to <see cref="Proven"/>) and notes.</summary>
public sealed class LogVerification
{
    public List<LogProblem> Problems { get; } = [];

    /// <summary>What is true and worth saying but proves nothing wrong: gaps the sidecar logged, an unsigned tail.</summary>
    public List<string> Notes { get; } = [];

    public string? Chain { get; internal set; }

    public string? Workload { get; internal set; }

    public long First { get; internal set; }

    public long Last { get; internal set; }

    public long Records { get; internal set; }

    /// <summary>Checkpoints of this chain that matched a record.</summary>
    public int CheckpointsMatched { get; internal set; }

    /// <summary>The latest checkpoint of this chain with a valid signature, if any.</summary>
    public Checkpoint? LastCheckpoint { get; internal set; }

    public bool IsProven => Problems.Count == 0;
}

/// <summary>
/// Proves a decision log complete and unmodified, or says where it is not:
/// 1. every line is a record of <see cref="RecordFormat"/> and its hash is SHA-256 over the previous hash and its
///    canonical bytes (a changed byte anywhere in a line is a changed hash);
/// 2. sequence numbers go up by one and each record's <c>prev</c> is the hash before it, across segments (deleted,
///    duplicated, reordered or inserted records break this), each segment begins with an open record of the same chain
///    at the sequence its name says, and ends with a newline;
/// 3. a whole log begins at record 1; a single segment may begin anywhere;
/// 4. every checkpoint of this chain has a valid signature by the workload's SVID (and, with a trust bundle, the
///    SVID chains to it), the record it names has the hash it signed, and the log reaches the last one (a cut tail).
/// Records after the last checkpoint are chained but not yet signed: said as a note, not a problem.
/// </summary>
public static class LogVerifier
{
    /// <param name="segments">The segment files in chain order.</param>
    /// <param name="wholeLog">True for a directory (must begin at record 1); false for one segment.</param>
    /// <param name="workload">The workload the log must be of; null to take the one the log names.</param>
    public static LogVerification Verify(IReadOnlyList<string> segments, bool wholeLog, IReadOnlyList<Checkpoint> checkpoints, string? workload = null, TrustBundle? bundle = null)
    {
        var result = new LogVerification();
        var bySequence = checkpoints.GroupBy(c => c.Sequence).ToDictionary(g => g.Key, g => g.ToList());
        var signatureProblems = new Dictionary<Checkpoint, string?>(ReferenceEqualityComparer.Instance);
        string? SignatureProblem(Checkpoint c)
        {
            if (!signatureProblems.TryGetValue(c, out var problem))
            {
                signatureProblems[c] = problem = c.Problem(bundle);
            }
            return problem;
        }
        bool Ours(Checkpoint c) => c.Chain == result.Chain && c.Workload == result.Workload;

        using var sha256 = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> computed = stackalloc byte[RecordFormat.HashBytes];
        Span<byte> previous = stackalloc byte[RecordFormat.HashBytes];
        long? expected = null;
        string? previousHash = null;
        var resync = false;
        if (segments.Count == 0)
        {
            result.Problems.Add(new LogProblem(null, "log", "no segments (decisions-*.jsonl) to verify"));
        }
        foreach (var path in segments)
        {
            var name = Path.GetFileName(path);
            var bytes = File.ReadAllBytes(path);
            if (bytes.Length == 0)
            {
                result.Problems.Add(new LogProblem(expected, name, "the segment is empty"));
                continue;
            }
            var canonical = new byte[bytes.Length];
            var nameSequence = ChainWriter.FirstSequenceOf(name);
            var lineNumber = 0;
            var start = 0;
            while (start < bytes.Length)
            {
                lineNumber++;
                var newline = Array.IndexOf(bytes, (byte)'\n', start);
                var torn = newline < 0;
                var line = bytes.AsSpan(start, (torn ? bytes.Length : newline) - start);
                start = torn ? bytes.Length : newline + 1;
                var where = string.Create(CultureInfo.InvariantCulture, $"{name} line {lineNumber}");
                if (torn)
                {
                    result.Problems.Add(new LogProblem(expected, where, "the segment ends in the middle of a line: it was cut"));
                    break;
                }
                var record = RecordFormat.Parse(line, canonical, out var canonicalLength, out var problem);
                if (record is null)
                {
                    result.Problems.Add(new LogProblem(expected, where, problem!));
                    resync = true;
                    continue;
                }
                Convert.FromHexString(record.Previous, previous, out _, out _);
                RecordFormat.Hash(sha256, previous, canonical.AsSpan(0, canonicalLength), computed);
                var contentHash = Convert.ToHexStringLower(computed);
                var n = record.Sequence;
                if (contentHash != record.Hash)
                {
                    result.Problems.Add(new LogProblem(n, where, "its hash does not match its content: the record was modified"));
                }
                if (lineNumber == 1)
                {
                    if (record.Kind != RecordKind.Open)
                    {
                        result.Problems.Add(new LogProblem(n, where, "the segment does not begin with its open record: records were removed or moved"));
                    }
                    if (nameSequence != n)
                    {
                        result.Problems.Add(new LogProblem(n, where, nameSequence is { } named
                            ? $"the segment's name says it begins at record {named}: segments were renamed or reordered"
                            : "the file's name is not a segment's (decisions-<first record, 20 digits>.jsonl)"));
                    }
                }
                if (record.Kind == RecordKind.Open)
                {
                    if (result.Chain is null)
                    {
                        result.Chain = record.Chain;
                        result.Workload = record.Workload;
                        if (workload is not null && workload != record.Workload)
                        {
                            result.Problems.Add(new LogProblem(n, where, $"this is the log of '{record.Workload}', not of '{workload}'"));
                        }
                    }
                    else if (record.Chain != result.Chain || record.Workload != result.Workload)
                    {
                        result.Problems.Add(new LogProblem(n, where, $"the segment belongs to another log (chain {record.Chain} of '{record.Workload}', not {result.Chain})"));
                    }
                }
                if (expected is null)
                {
                    result.First = n;
                    if (wholeLog && (n != 1 || record.Previous != RecordFormat.Genesis))
                    {
                        result.Problems.Add(new LogProblem(n, where, n > 1
                            ? $"the log begins at record {n}: records 1..{n - 1} are missing"
                            : "record 1 does not begin the chain (its prev is not zeros)"));
                    }
                    else if (!wholeLog && n > 1)
                    {
                        result.Notes.Add($"verified from record {n}, the first of {name}");
                    }
                }
                else if (!resync)
                {
                    if (n != expected)
                    {
                        result.Problems.Add(new LogProblem(n, where, $"record {expected} should be here: records were deleted, duplicated, inserted or reordered"));
                    }
                    else if (record.Previous != previousHash)
                    {
                        result.Problems.Add(new LogProblem(n, where, $"it does not follow record {n - 1} (its prev is not that record's hash): the chain was broken"));
                    }
                }
                resync = false;
                if (record.Kind == RecordKind.Gap)
                {
                    result.Notes.Add($"record {n}: {record.Lost} decision(s) were not logged here (the sidecar's queue was full)");
                }
                if (result.Chain is not null && bySequence.TryGetValue(n, out var signed))
                {
                    foreach (var checkpoint in signed.Where(c => Ours(c) && SignatureProblem(c) is null))
                    {
                        if (checkpoint.Hash != contentHash)
                        {
                            result.Problems.Add(new LogProblem(n, where, $"it does not match the checkpoint signed at {checkpoint.Time:O}: the record or one before it was modified"));
                        }
                        else if (checkpoint.Segment != name)
                        {
                            result.Problems.Add(new LogProblem(n, where, $"the checkpoint signed at {checkpoint.Time:O} has it in {checkpoint.Segment}: segments were renamed"));
                        }
                        else
                        {
                            result.CheckpointsMatched++;
                        }
                    }
                }
                previousHash = record.Hash;
                expected = n + 1;
                result.Last = n;
                result.Records++;
            }
        }

        var ours = checkpoints.Where(c => result.Chain is not null && Ours(c)).ToList();
        foreach (var bad in ours.Where(c => SignatureProblem(c) is not null).OrderBy(c => c.Sequence))
        {
            result.Problems.Add(new LogProblem(bad.Sequence, "checkpoint", $"the checkpoint signed at {bad.Time:O} does not count: {SignatureProblem(bad)}"));
        }
        var valid = ours.Where(c => SignatureProblem(c) is null).ToList();
        result.LastCheckpoint = valid.MaxBy(c => c.Sequence);
        if (result.Chain is not null && result.LastCheckpoint is null)
        {
            result.Problems.Add(new LogProblem(null, "checkpoints", $"no signed checkpoint of this log (chain {result.Chain} of '{result.Workload}'): it cannot be proven complete"));
        }
        else if (result.LastCheckpoint is { } last && last.Sequence > result.Last)
        {
            result.Problems.Add(new LogProblem(result.Last + 1, "end of log", $"the log ends at record {result.Last} but the checkpoint signed at {last.Time:O} covers record {last.Sequence}: records {result.Last + 1}..{last.Sequence} are missing"));
        }
        else if (result.LastCheckpoint is { } tail && tail.Sequence < result.Last)
        {
            result.Notes.Add($"records {tail.Sequence + 1}..{result.Last} come after the last checkpoint: chained, not yet signed");
        }
        return result;
    }
}
