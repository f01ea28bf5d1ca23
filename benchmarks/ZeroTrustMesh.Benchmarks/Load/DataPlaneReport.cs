using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>A figure over the repetitions: median with min..max.</summary>
internal sealed record Stat(double Median, double Min, double Max, int N)
{
    public static Stat Of(IEnumerable<double> values)
    {
        var sorted = values.Where(v => !double.IsNaN(v)).Order().ToArray();
        if (sorted.Length == 0)
        {
            return new Stat(double.NaN, double.NaN, double.NaN, 0);
        }
        var median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        return new Stat(median, sorted[0], sorted[^1], sorted.Length);
    }

    public string Format(string format) => N switch
    {
        0 => "–",
        1 => Median.ToString(format, CultureInfo.InvariantCulture),
        _ => string.Create(CultureInfo.InvariantCulture, $"{Median.ToString(format, CultureInfo.InvariantCulture)} ({Min.ToString(format, CultureInfo.InvariantCulture)}..{Max.ToString(format, CultureInfo.InvariantCulture)})"),
    };
}

/// <summary>One proxy process over one run: CPU used and its peak RSS during the run.</summary>
internal sealed record ProcessRunJson(string Process, double CpuSeconds, double CpuSecondsPer1000Requests, double PeakRssMb);

/// <summary>One run of one load client against one target.</summary>
internal sealed record RunJson(int Repetition, string Phase, string Target, string Client, ClientResult Result, IReadOnlyList<ProcessRunJson> Processes, double LoadAverage1m);

internal sealed record ProcessSummaryJson(string Process, int Pid, double ExecToReadyMs, double IdleRssMb, double IdleRssAfterProbesMb, double RssAfterLoadMb, Stat PeakRssCapacityMb, Stat PeakRssAtRateMb,
    Stat CpuSecondsPer1000RequestsCapacity, Stat CpuSecondsPer1000RequestsAtRate);

internal sealed record TargetSummaryJson(string Target, string Description, Stat CapacityPerSecond, Stat CapacityErrors, Stat CapacityVsDirect, Stat CapacityVsHaproxy,
    Stat RateP50Ms, Stat RateP90Ms, Stat RateP99Ms, Stat RateErrors, Stat AddedP50Ms, Stat AddedP90Ms, Stat AddedP99Ms, Stat P99VsHaproxy, IReadOnlyList<ProcessSummaryJson> Processes);

internal sealed record CheckJson(string Goal, string Source, string Measured, bool Met, string Margin);

internal sealed record MachineFactsJson(int Cores, string CpuModel, string Kernel, string Runtime, string Sdk, string HarnessGc, string SidecarGc, string OpenSsl, string Haproxy, string Wrk,
    double LoadAverageBefore, Stat LoadAverageDuringRuns)
{
    public string Nginx { get; init; } = "nginx: not used";

    public string H2load { get; init; } = "h2load: not used";
}

internal sealed record DataPlaneSettingsJson(bool Quick, int Repetitions, double CapacitySeconds, int Connections, int WrkThreads, double RateSeconds, int Rate, double WarmupSeconds,
    string Path, string Sidecar, string CapacityClient, string? HaproxySkipped)
{
    public string? NginxSkipped { get; init; }

    public string? H2loadSkipped { get; init; }

    public double H2Seconds { get; init; }

    /// <summary>Each paired run of the API protection phase (both routes together).</summary>
    public double ApiPairedSeconds { get; init; }

    public int H2Clients { get; init; }

    public int H2Streams { get; init; }

    public double NewConnectionSeconds { get; init; }

    public int NewConnectionWorkers { get; init; }

    public string? BareProxy { get; init; }

    public string? BareProxySkipped { get; init; }

    public string? BarePairSkipped { get; init; }

    public string? FloorRelay { get; init; }

    public string? FloorPairSkipped { get; init; }

    /// <summary>Why the L4 target did not run (no <c>--l4</c>, not root, no ip or iptables); null when it ran.</summary>
    public string? L4Skipped { get; init; }
}

/// <summary>
/// One proxy process at idle, settled (<see cref="DataPlaneRun.IdleSettleSeconds"/> after the probes): <c>VmRSS</c> (and
/// its value 3 s after the probes), <c>RssAnon</c>, <c>RssFile</c>, <c>RssShmem</c> in MiB, its
/// executable's size (NaN when run with dotnet), and against the bare NativeAOT stack (NaN without it): the ratio of
/// VmRSS and how much more of each there is.
/// </summary>
internal sealed record IdleMemoryJson(string Target, string Process, double VmRssMb, double VmRssAfterProbesMb, double RssAnonMb, double RssFileMb, double RssShmemMb, double BinaryMb,
    double VmRssVsBare, double VmRssOverBareMb, double RssAnonOverBareMb, double RssFileOverBareMb);

/// <summary>CPU and peak RSS of one proxy process over the runs of one phase.</summary>
internal sealed record ProcessPhaseJson(string Process, Stat CpuSecondsPer1000Requests, Stat PeakRssMb);

/// <summary>HTTP/2, gRPC or new-connection figures of one target. <paramref name="P50VsHaproxy"/>: per-repetition ratio of the median time (new connections).</summary>
internal sealed record PhaseSummaryJson(string Phase, string Target, string? Skipped, Stat PerSecond, Stat VsDirect, Stat VsHaproxy, Stat P50Ms, Stat P99Ms, Stat MeanMs,
    Stat Errors, Stat P50VsHaproxy, IReadOnlyList<ProcessPhaseJson> Processes);

/// <summary>
/// The sidecar pair against a floor pair (the bare stack, or the runtime's floor relay) in one phase: the per-repetition
/// ratios of requests per second and of CPU per request, and each pair's CPU (its processes' user+system seconds added
/// up) per 1,000 requests, HAProxy's beside them.
/// </summary>
internal sealed record FloorComparisonJson(string Phase, Stat SidecarVsFloor, Stat SidecarPairCpu, Stat FloorPairCpu, Stat HaproxyPairCpu, Stat CpuVsFloor);

/// <summary>One start of a fresh proxy instance: milliseconds from exec to <paramref name="Ready"/>.</summary>
internal sealed record StartupRunJson(int Repetition, string Target, string Process, double ExecToReadyMs, string Ready);

internal sealed record StartupSummaryJson(string Target, string Process, string Ready, Stat ExecToReadyMs);

internal sealed record DataPlaneReport(DateTimeOffset Date, MachineFactsJson Machine, DataPlaneSettingsJson Settings, IReadOnlyList<TargetSummaryJson> Targets,
    IReadOnlyList<CheckJson> Checks, IReadOnlyList<RunJson> Runs, IReadOnlyList<string> Notes)
{
    public const string Direct = "direct";
    public const string Ztm = "ztm-sidecar-pair";
    public const string ZtmL4 = "ztm-sidecar-pair-l4";
    public const string Haproxy = "haproxy-pair";
    public const string Nginx = "nginx-pair";
    public const string Bare = "bare-stack";
    public const string BarePair = "bare-stack-pair";
    public const string FloorPair = "floor-relay-pair";

    public IReadOnlyList<PhaseSummaryJson> Phases { get; init; } = [];

    public IReadOnlyList<StartupSummaryJson> Startup { get; init; } = [];

    public IReadOnlyList<StartupRunJson> StartupRuns { get; init; } = [];

    public IReadOnlyList<IdleMemoryJson> IdleMemory { get; init; } = [];

    public IReadOnlyList<FloorComparisonJson> StackFloor { get; init; } = [];

    public IReadOnlyList<FloorComparisonJson> RuntimeFloor { get; init; } = [];

    /// <summary>The L4 sidecar pair against the floor-relay pair, as <see cref="RuntimeFloor"/> is for the L7 pair.</summary>
    public IReadOnlyList<FloorComparisonJson> L4Floor { get; init; } = [];

    public ControlPlaneFiguresJson? ControlPlane { get; init; }

    public ApiProtectionJson? ApiProtection { get; init; }

    public string? ControlPlaneSkipped { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, DataPlaneReportJson.Default.DataPlaneReport);

    public string ToMarkdown()
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine(inv, $"# dataplane-load {Date:yyyy-MM-dd HH:mm} UTC{(Settings.Quick ? " (--quick: smoke run, figures not meaningful)" : "")}");
        md.AppendLine();
        md.AppendLine(inv, $"Machine: {Machine.Cores} cores ({Machine.CpuModel}), kernel {Machine.Kernel}, {Machine.Runtime} (SDK {Machine.Sdk}), {Machine.OpenSsl}, {Machine.Haproxy}, {Machine.Nginx}, {Machine.Wrk}, {Machine.H2load}.");
        md.AppendLine(inv, $"GC: sidecar {Machine.SidecarGc}; harness {Machine.HarnessGc}. Load average (1 min) before: {Machine.LoadAverageBefore:0.00}, at the start of each run: {Machine.LoadAverageDuringRuns.Format("0.00")} — everything (clients, proxies, app) shares these cores.");
        md.AppendLine(inv, $"Sidecar: `{Settings.Sidecar}`. Upstream: `ztm-demo-app` `GET {Settings.Path}` (fixed 1,024-byte body), HTTP/1.1 keep-alive from the client.");
        md.AppendLine(inv, $"{Settings.Repetitions} repetition(s){(Settings.Quick ? " (no warm-up round)" : " after an unreported warm-up round")}, targets interleaved in each phase (direct, ztm, haproxy, nginx, bare-stack pair, direct, …). Capacity: {Settings.CapacityClient}, {Settings.Connections} connections, {Settings.CapacitySeconds:0.#} s. Latency: open loop at {Settings.Rate} req/s for {Settings.RateSeconds:0.#} s (after {Settings.WarmupSeconds:0.#} s unmeasured), from send to end of body.");
        if (Settings.HaproxySkipped is not null)
        {
            md.AppendLine();
            md.AppendLine(inv, $"**HAProxy pair skipped: {Settings.HaproxySkipped}**");
        }
        if (Settings.NginxSkipped is not null)
        {
            md.AppendLine();
            md.AppendLine(inv, $"**nginx pair skipped: {Settings.NginxSkipped}**");
        }
        if (Settings.BarePairSkipped is not null)
        {
            md.AppendLine();
            md.AppendLine(inv, $"**Bare-stack pair skipped: {Settings.BarePairSkipped}**");
        }
        md.AppendLine();
        md.AppendLine("Figures are median (min..max) over the repetitions; ratios are per repetition (same round), then median (min..max).");
        md.AppendLine();
        md.AppendLine("## HTTP/1.1 capacity (closed loop, keep-alive)");
        md.AppendLine();
        md.AppendLine("| target | req/s | × direct | × HAProxy pair | errors |");
        md.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var t in Targets)
        {
            md.AppendLine(inv, $"| {t.Target} | {t.CapacityPerSecond.Format("0")} | {t.CapacityVsDirect.Format("0.00")} | {t.CapacityVsHaproxy.Format("0.00")} | {t.CapacityErrors.Format("0")} |");
        }
        md.AppendLine();
        md.AppendLine(inv, $"## Latency at {Settings.Rate} req/s (open loop), ms");
        md.AppendLine();
        md.AppendLine("| target | p50 | p90 | p99 | added p50 | added p90 | added p99 | p99 × HAProxy pair | errors |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var t in Targets)
        {
            md.AppendLine(inv, $"| {t.Target} | {t.RateP50Ms.Format("0.000")} | {t.RateP90Ms.Format("0.000")} | {t.RateP99Ms.Format("0.000")} | {t.AddedP50Ms.Format("+0.000;-0.000")} | {t.AddedP90Ms.Format("+0.000;-0.000")} | {t.AddedP99Ms.Format("+0.000;-0.000")} | {t.P99VsHaproxy.Format("0.00")} | {t.RateErrors.Format("0")} |");
        }
        ReportSections.AppendProtocols(md, this);
        ReportSections.AppendStackFloor(md, this);
        ReportSections.AppendRuntimeFloor(md, this);
        ReportSections.AppendL4Floor(md, this);
        ReportSections.AppendStartup(md, this);
        ApiProtectionPhase.AppendSection(md, this);
        md.AppendLine();
        md.AppendLine("## Proxy processes");
        md.AppendLine();
        md.AppendLine(inv, $"RSS in MiB (`VmRSS` idle before any load — settled, {DataPlaneRun.IdleSettleSeconds} s after the probes, and in brackets 3 s after them (1 s and 0.5 s with --quick) — and after all load; peak = `VmHWM`, reset before each run). CPU = user+system seconds from `/proc/<pid>/stat` per 1,000 requests (at 1,000 req/s this is also vCPU used).");
        md.AppendLine();
        md.AppendLine("| target | process | exec→ready ms | RSS idle | peak RSS, capacity | peak RSS, 1000 req/s | RSS after load | CPU s/1000 req, capacity | CPU s/1000 req, 1000 req/s |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var t in Targets)
        {
            foreach (var p in t.Processes)
            {
                md.AppendLine(inv, $"| {t.Target} | {p.Process} | {(double.IsNaN(p.ExecToReadyMs) ? "–" : p.ExecToReadyMs.ToString("0", inv))} | {p.IdleRssMb:0.0} ({p.IdleRssAfterProbesMb:0.0}) | {p.PeakRssCapacityMb.Format("0.0")} | {p.PeakRssAtRateMb.Format("0.0")} | {p.RssAfterLoadMb:0.0} | {p.CpuSecondsPer1000RequestsCapacity.Format("0.000")} | {p.CpuSecondsPer1000RequestsAtRate.Format("0.000")} |");
            }
        }
        ReportSections.AppendIdleMemory(md, this);
        ReportSections.AppendControlPlane(md, this);
        md.AppendLine();
        md.AppendLine("## Targets (issues 4, 6, 18 and 20)");
        md.AppendLine();
        md.AppendLine("| goal | from | measured | met | margin |");
        md.AppendLine("|---|---|---|---|---|");
        foreach (var c in Checks)
        {
            md.AppendLine(inv, $"| {c.Goal} | {c.Source} | {c.Measured} | {(c.Met ? "yes" : "**no**")} | {c.Margin} |");
        }
        if (Notes.Count > 0)
        {
            md.AppendLine();
            foreach (var note in Notes)
            {
                md.AppendLine(inv, $"- {note}");
            }
        }
        md.AppendLine();
        md.AppendLine("## Every run");
        md.AppendLine();
        md.AppendLine("| rep | phase | target | req/s | errors | p50 ms | p90 ms | p99 ms | mean ms | send lag p99 ms | load avg | proxy CPU s/1000 req | proxy peak RSS MiB |");
        md.AppendLine("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
        foreach (var r in Runs)
        {
            var cpu = string.Join(", ", r.Processes.Select(p => string.Create(inv, $"{p.Process} {p.CpuSecondsPer1000Requests:0.000}")));
            var rss = string.Join(", ", r.Processes.Select(p => string.Create(inv, $"{p.Process} {p.PeakRssMb:0.0}")));
            md.AppendLine(inv, $"| {r.Repetition} | {r.Phase} | {r.Target} | {r.Result.PerSecond:0} | {r.Result.Errors} | {r.Result.P50Ms:0.000} | {r.Result.P90Ms:0.000} | {r.Result.P99Ms:0.000} | {r.Result.MeanMs:0.000} | {(double.IsNaN(r.Result.SendLagP99Ms) ? "–" : r.Result.SendLagP99Ms.ToString("0.000", inv))} | {r.LoadAverage1m:0.00} | {cpu} | {rss} |");
        }
        var withErrors = Runs.Where(r => r.Result.ErrorsByKind.Count > 0).ToList();
        if (withErrors.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("What the errors were, as the load client saw them:");
            md.AppendLine();
            foreach (var r in withErrors)
            {
                md.AppendLine(inv, $"- rep {r.Repetition} {r.Phase} {r.Target}: {string.Join("; ", r.Result.ErrorsByKind.Select(e => $"{e.Key} ×{e.Value}"))}");
            }
        }
        return md.ToString();
    }
}

[JsonSerializable(typeof(DataPlaneReport))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
internal sealed partial class DataPlaneReportJson : JsonSerializerContext;
