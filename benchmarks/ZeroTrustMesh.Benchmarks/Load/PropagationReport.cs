using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>Nearest-rank percentiles of one change over the N sidecars, in ms.</summary>
internal sealed record Summary(int Count, double Min, double P50, double P90, double P99, double Max)
{
    public static Summary Of(double[] sorted)
    {
        double At(double q) => sorted.Length == 0 ? double.NaN : sorted[Math.Max(0, (int)Math.Ceiling(q * sorted.Length) - 1)];
        return new Summary(sorted.Length, sorted.Length == 0 ? double.NaN : sorted[0], At(0.50), At(0.90), At(0.99), sorted.Length == 0 ? double.NaN : sorted[^1]);
    }
}

/// <param name="ApplyMs">Apply request to response (validation, file write, audit line).</param>
/// <param name="Received">Per sidecar: Apply response → the snapshot of the new version read from the stream.</param>
/// <param name="ServerCpuMs">Control-plane CPU (user + system, by PID) from before Apply until every sidecar had the version; ClientCpuMs the same for this process.</param>
/// <param name="StatusAckP50Ms">Apply response → the first Status poll in which half the sidecars show the version applied (poll resolution).</param>
internal sealed record ChangeResult(string Version, double ApplyMs, Summary Received, double StatusAckP50Ms, double StatusAckP99Ms, double AllAckedMs, int StatusPolls,
    double ServerCpuMs, double ClientCpuMs);

internal sealed record LevelResult(int Sidecars, int Identities, int ControlPlaneSockets, double ConnectSeconds, double RssConnectedMb, double PeakConnectedMb,
    double RssAfterChangesMb, double PeakAfterChangesMb, double KibPerSidecar, IReadOnlyList<ChangeResult> Changes);

internal sealed record PropagationMachine(int ProcessorCount, string Cpu, string Kernel, string Runtime, string LoadAverageAtStart);

internal sealed record PropagationReport(
    DateTimeOffset Date,
    PropagationMachine Machine,
    IReadOnlyList<int> SidecarCounts,
    int ChangesPerCount,
    int WarmupChangesPerCount,
    int Identities,
    double StatusIntervalMs,
    int ConfigDistributorDebounceMs,
    double RssIdleMb,
    double RssBeforeStreamsMb,
    double MintSeconds,
    IReadOnlyList<LevelResult> Levels,
    int FailedStreams,
    IReadOnlyList<string> Failures,
    double TargetP99Ms,
    bool TargetMet)
{
    public string ToJson() => JsonSerializer.Serialize(this, PropagationReportJson.Default.PropagationReport);

    public string ToMarkdown()
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine(inv, $"## policy-propagation {Date:yyyy-MM-dd HH:mm} UTC");
        md.AppendLine();
        md.AppendLine(inv, $"{Machine.ProcessorCount} cores ({Machine.Cpu}), kernel {Machine.Kernel}, .NET {Machine.Runtime}, load average {Machine.LoadAverageAtStart} at the start; control plane (Release, its own process, server GC) and the simulated sidecars (one process) on the same host, loopback, mTLS, HTTP/2.");
        md.AppendLine(inv, $"{Identities} workload SVIDs (`spiffe://cluster.local/ns/bench/sa/svc-<i>`, minted through join tokens in {MintSeconds:0.0} s), one channel each; sidecar i uses SVID i mod {Identities}. Each change: a selector-less AuthorizationPolicy in `bench` (selects every sidecar), debounced {ConfigDistributorDebounceMs} ms by the control plane. {WarmupChangesPerCount} warm-up change(s) per N, not reported. Status polled every {StatusIntervalMs:0} ms during a change.");
        md.AppendLine();
        md.AppendLine("Time from the Apply response to each sidecar reading the new version from its stream (ms, over the N sidecars), and to the control plane showing the ACKs in `PolicyAdmin.Status` (first poll with 50 % / 99 % / all):");
        md.AppendLine();
        md.AppendLine("| N | change | version | Apply ms | p50 | p90 | p99 | max | ACKed 50 % | ACKed 99 % | all ACKed | control-plane CPU ms | sidecars' CPU ms |");
        md.AppendLine("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var level in Levels)
        {
            var i = 0;
            foreach (var c in level.Changes)
            {
                md.AppendLine(inv, $"| {level.Sidecars:N0} | {++i} | {c.Version} | {c.ApplyMs:0} | {c.Received.P50:0} | {c.Received.P90:0} | {c.Received.P99:0} | {c.Received.Max:0} | {c.StatusAckP50Ms:0} | {c.StatusAckP99Ms:0} | {c.AllAckedMs:0} | {c.ServerCpuMs:0} | {c.ClientCpuMs:0} |");
            }
        }
        md.AppendLine();
        md.AppendLine("| N | median p50 | median p99 | worst p99 | worst max | median all ACKed |");
        md.AppendLine("|---:|---:|---:|---:|---:|---:|");
        foreach (var level in Levels)
        {
            md.AppendLine(inv, $"| {level.Sidecars:N0} | {Median(level.Changes.Select(c => c.Received.P50)):0} | {Median(level.Changes.Select(c => c.Received.P99)):0} | {level.Changes.Max(c => c.Received.P99):0} | {level.Changes.Max(c => c.Received.Max):0} | {Median(level.Changes.Select(c => c.AllAckedMs)):0} |");
        }
        md.AppendLine();
        md.AppendLine(inv, $"Control plane memory (`VmRSS` from /proc/<pid>/status): {RssIdleMb:0.0} MiB idle, {RssBeforeStreamsMb:0.0} MiB after minting the SVIDs (before any stream).");
        md.AppendLine();
        md.AppendLine("| N | connect + first ACK s | sockets held by the control plane | RSS connected MiB | KiB per sidecar (over RSS before streams) | RSS after the changes MiB | peak (VmHWM) MiB |");
        md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var level in Levels)
        {
            md.AppendLine(inv, $"| {level.Sidecars:N0} | {level.ConnectSeconds:0.0} | {level.ControlPlaneSockets} | {level.RssConnectedMb:0.0} | {level.KibPerSidecar:0.0} | {level.RssAfterChangesMb:0.0} | {level.PeakAfterChangesMb:0.0} |");
        }
        md.AppendLine();
        md.AppendLine(inv, $"Target (issue 5): p99 ≤ {TargetP99Ms:0} ms at 5,000 sidecars, every measured change: {(Levels.All(l => l.Sidecars < 5000) ? "not measured (no N ≥ 5,000)" : TargetMet ? "met" : "NOT met")}. Failed streams: {FailedStreams}{(Failures.Count > 0 ? " (" + string.Join("; ", Failures) + ")" : "")}.");
        return md.ToString();
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}

[JsonSerializable(typeof(PropagationReport))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
internal sealed partial class PropagationReportJson : JsonSerializerContext;
