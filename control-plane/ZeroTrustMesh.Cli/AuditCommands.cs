using System.CommandLine;
using System.Security.Cryptography;
using ZeroTrustMesh.DecisionLog;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using TrustBundle = ZeroTrustMesh.Identity.TrustBundle;

namespace ZeroTrustMesh.Cli;

/// <summary>
/// <c>ztmctl audit verify</c> and <c>ztmctl audit checkpoints</c>: the tamper-evident decision log. Verification is
/// <see cref="LogVerifier"/>'s; this only finds the segments and the checkpoints and prints one line per problem.
/// Exit codes of verify: 0 proven, 1 tampered or incomplete, 2 usage, 3 the control plane unreachable.
/// </summary>
internal static class AuditCommands
{
    public static Command Command()
    {
        var audit = new Command("audit", "The tamper-evident decision log sidecars write with --decision-log");
        audit.Subcommands.Add(Verify());
        audit.Subcommands.Add(Checkpoints());
        return audit;
    }

    private static Command Verify()
    {
        var log = new Option<string>("--log") { Description = "The sidecar's --decision-log directory (the whole log), or one segment file", Required = true };
        var workload = new Option<string?>("--workload") { Description = "The workload's SPIFFE ID (default: the one the log names)" };
        var checkpoints = new Option<string?>("--checkpoints") { Description = "Read the checkpoints from this file (JSON lines, as 'ztmctl audit checkpoints' prints) instead of the control plane" };
        var trustBundle = new Option<string?>("--trust-bundle") { Description = "With --checkpoints: also check that each checkpoint's SVID chains to this PEM bundle" };
        var command = new Command("verify", "Prove a decision log complete and unmodified up to its last checkpoint, or say where it is not") { log, workload, checkpoints, trustBundle };
        command.SetAction(async (parse, cancellation) =>
        {
            var path = parse.GetValue(log)!;
            List<string> segments;
            bool wholeLog;
            if (Directory.Exists(path))
            {
                segments = ChainWriter.Segments(path);
                wholeLog = true;
                if (segments.Count == 0)
                {
                    return Ztmctl.Fail(Ztmctl.UsageError, $"{path} holds no decision-log segments ({ChainWriter.SegmentPrefix}*{ChainWriter.SegmentExtension})");
                }
            }
            else if (File.Exists(path))
            {
                segments = [path];
                wholeLog = false;
            }
            else
            {
                return Ztmctl.Fail(Ztmctl.UsageError, $"--log {path}: no such directory or file");
            }
            var id = parse.GetValue(workload) ?? WorkloadOf(segments[0]);
            if (id is null)
            {
                return Ztmctl.Fail(Ztmctl.UsageError, $"{segments[0]} does not begin with an open record naming the workload: give --workload");
            }
            if (!SpiffeId.TryParse(id, out _, out var idError))
            {
                return Ztmctl.Fail(Ztmctl.UsageError, $"--workload '{id}' is not a SPIFFE ID: {idError}");
            }
            TrustBundle? bundle = null;
            if (parse.GetValue(trustBundle) is { } bundlePath)
            {
                try
                {
                    bundle = TrustBundle.FromPem(SpiffeId.Parse(id).TrustDomain, File.ReadAllText(bundlePath));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
                {
                    return Ztmctl.Fail(Ztmctl.UsageError, $"cannot read --trust-bundle {bundlePath}: {e.Message}");
                }
            }
            if (parse.GetValue(checkpoints) is { } file)
            {
                List<Checkpoint> read;
                try
                {
                    read = Checkpoint.ReadLines(File.ReadLines(file));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
                {
                    return Ztmctl.Fail(Ztmctl.UsageError, $"cannot read --checkpoints {file}: {e.Message}");
                }
                return Report(LogVerifier.Verify(segments, wholeLog, read, id, bundle));
            }
            // From the control plane, which verified each checkpoint's SVID against its CA when it took it; the
            // signatures and the workload are checked again here.
            return await Ztmctl.CallAsync(parse, async (channel, ct) =>
                Report(LogVerifier.Verify(segments, wholeLog, await FetchAsync(channel, id, ct), id, bundle)), cancellation);
        });
        return command;
    }

    private static Command Checkpoints()
    {
        var workload = new Option<string>("--workload") { Description = "The workload's SPIFFE ID", Required = true };
        var command = new Command("checkpoints", "Print the decision-log checkpoints the control plane holds for a workload, one JSON line each (for --checkpoints)") { workload };
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            foreach (var checkpoint in await FetchAsync(channel, parse.GetValue(workload)!, ct))
            {
                Console.WriteLine(checkpoint.ToJson());
            }
            return 0;
        }, cancellation));
        return command;
    }

    private static async Task<List<Checkpoint>> FetchAsync(Grpc.Net.Client.GrpcChannel channel, string workload, CancellationToken cancellation)
    {
        var response = await new AuditAdmin.AuditAdminClient(channel).ListCheckpointsAsync(new ListCheckpointsRequest { Workload = workload },
            deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: cancellation);
        return [.. response.Checkpoints.Select(CheckpointMapping.FromProto)];
    }

    /// <summary>One line per problem (record number first), then the verdict; notes go to stdout as well.</summary>
    private static int Report(LogVerification result)
    {
        foreach (var problem in result.Problems)
        {
            Console.WriteLine(problem.ToString());
        }
        foreach (var note in result.Notes)
        {
            Console.WriteLine($"note: {note}");
        }
        if (result.IsProven)
        {
            var last = result.LastCheckpoint!;
            Console.WriteLine($"proven: records {result.First}..{last.Sequence} of {result.Workload} (chain {result.Chain}) are complete and unmodified; "
                + $"{result.CheckpointsMatched} checkpoint(s) matched, the last signed at {last.Time:yyyy-MM-ddTHH:mm:ssZ}");
            return 0;
        }
        Console.WriteLine($"NOT proven: {result.Problems.Count} problem(s) in records {result.First}..{result.Last} of {result.Workload ?? "an unknown workload"}");
        return 1;
    }

    private static string? WorkloadOf(string segment)
    {
        var first = File.ReadLines(segment).FirstOrDefault();
        if (first is null)
        {
            return null;
        }
        var bytes = System.Text.Encoding.UTF8.GetBytes(first);
        return RecordFormat.Parse(bytes, new byte[bytes.Length], out _, out _)?.Workload;
    }
}
