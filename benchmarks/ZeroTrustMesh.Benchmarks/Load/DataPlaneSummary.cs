using System.Globalization;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// From the runs to the report: every figure as median (min..max) over the measured repetitions; ratios are taken per
/// repetition between runs of the same round, then summarized the same way. Also the issue targets with their margins.
/// </summary>
internal static class DataPlaneSummary
{
    public static TargetSummaryJson Summarize(Target target, List<RunJson> runs, Dictionary<LoadProcess, IdleMemoryJson> idle, Dictionary<LoadProcess, double> after,
        Dictionary<LoadProcess, double> execToRegistered)
    {
        Stat Over(string phase, Func<ClientResult, double> figure) => Stat.Of(runs.Where(r => r.Phase == phase && r.Target == target.Name).Select(r => figure(r.Result)));
        Stat PerRep(string phase, string other, Func<ClientResult, ClientResult, double> compare) => Compare(runs, phase, target.Name, other, compare);
        var processes = target.Proxies.Select(p =>
        {
            Stat Figure(string phase, Func<ProcessRunJson, double> figure) =>
                Stat.Of(runs.Where(r => r.Phase == phase && r.Target == target.Name).SelectMany(r => r.Processes).Where(x => x.Process == p.Name).Select(figure));
            return new ProcessSummaryJson(p.Name, p.Pid, execToRegistered.GetValueOrDefault(p, double.NaN), idle[p].VmRssMb, idle[p].VmRssAfterProbesMb, after[p],
                Figure(DataPlaneRun.Capacity, x => x.PeakRssMb), Figure(DataPlaneRun.Rate, x => x.PeakRssMb),
                Figure(DataPlaneRun.Capacity, x => x.CpuSecondsPer1000Requests), Figure(DataPlaneRun.Rate, x => x.CpuSecondsPer1000Requests));
        }).ToList();
        return new TargetSummaryJson(target.Name, target.Description,
            Over(DataPlaneRun.Capacity, r => r.PerSecond), Over(DataPlaneRun.Capacity, r => r.Errors),
            PerRep(DataPlaneRun.Capacity, DataPlaneReport.Direct, (a, b) => a.PerSecond / b.PerSecond),
            PerRep(DataPlaneRun.Capacity, DataPlaneReport.Haproxy, (a, b) => a.PerSecond / b.PerSecond),
            Over(DataPlaneRun.Rate, r => r.P50Ms), Over(DataPlaneRun.Rate, r => r.P90Ms), Over(DataPlaneRun.Rate, r => r.P99Ms), Over(DataPlaneRun.Rate, r => r.Errors),
            PerRep(DataPlaneRun.Rate, DataPlaneReport.Direct, (a, b) => a.P50Ms - b.P50Ms),
            PerRep(DataPlaneRun.Rate, DataPlaneReport.Direct, (a, b) => a.P90Ms - b.P90Ms),
            PerRep(DataPlaneRun.Rate, DataPlaneReport.Direct, (a, b) => a.P99Ms - b.P99Ms),
            PerRep(DataPlaneRun.Rate, DataPlaneReport.Haproxy, (a, b) => a.P99Ms / b.P99Ms),
            processes);
    }

    /// <summary>HTTP/2, gRPC or new-connection figures of one target; <paramref name="skipped"/> says why there are none.</summary>
    public static PhaseSummaryJson SummarizePhase(string phase, Target target, IReadOnlyList<LoadProcess> proxies, List<RunJson> runs, string? skipped)
    {
        var mine = runs.Where(r => r.Phase == phase && r.Target == target.Name).ToList();
        Stat Over(Func<ClientResult, double> figure) => Stat.Of(mine.Select(r => figure(r.Result)));
        var processes = proxies.Select(p => new ProcessPhaseJson(p.Name,
            Stat.Of(mine.SelectMany(r => r.Processes).Where(x => x.Process == p.Name).Select(x => x.CpuSecondsPer1000Requests)),
            Stat.Of(mine.SelectMany(r => r.Processes).Where(x => x.Process == p.Name).Select(x => x.PeakRssMb)))).ToList();
        return new PhaseSummaryJson(phase, target.Name, skipped, Over(r => r.PerSecond),
            Compare(runs, phase, target.Name, DataPlaneReport.Direct, (a, b) => a.PerSecond / b.PerSecond),
            Compare(runs, phase, target.Name, DataPlaneReport.Haproxy, (a, b) => a.PerSecond / b.PerSecond),
            Over(r => r.P50Ms), Over(r => r.P99Ms), Over(r => r.MeanMs), Over(r => r.Errors),
            Compare(runs, phase, target.Name, DataPlaneReport.Haproxy, (a, b) => a.P50Ms / b.P50Ms), processes);
    }

    /// <summary>The sidecar pair (or <paramref name="sidecar"/>, the L4 pair) against <paramref name="floor"/> (a pair's target name), phase by phase; empty when either did not run.</summary>
    public static List<FloorComparisonJson> Floor(List<RunJson> runs, string floor, string sidecar = DataPlaneReport.Ztm)
    {
        static double PairCpu(RunJson run) => run.Processes.Sum(p => p.CpuSecondsPer1000Requests);
        Stat Cpu(string phase, string target) => Stat.Of(runs.Where(r => r.Phase == phase && r.Target == target).Select(PairCpu));
        Stat CpuRatio(string phase) => Stat.Of(runs.Select(r => r.Repetition).Distinct().Order().Select(rep =>
            runs.FirstOrDefault(r => r.Repetition == rep && r.Phase == phase && r.Target == sidecar) is { } mine
            && runs.FirstOrDefault(r => r.Repetition == rep && r.Phase == phase && r.Target == floor) is { } theirs
                ? PairCpu(mine) / PairCpu(theirs) : double.NaN));
        return [.. new[] { DataPlaneRun.Capacity, DataPlaneRun.Http2, DataPlaneRun.Grpc, DataPlaneRun.NewConnection, DataPlaneRun.Rate }
            .Where(phase => runs.Any(r => r.Phase == phase && r.Target == floor) && runs.Any(r => r.Phase == phase && r.Target == sidecar))
            .Select(phase => new FloorComparisonJson(phase,
                Compare(runs, phase, sidecar, floor, (a, b) => a.PerSecond / b.PerSecond),
                Cpu(phase, sidecar), Cpu(phase, floor), Cpu(phase, DataPlaneReport.Haproxy), CpuRatio(phase)))];
    }

    public static List<StartupSummaryJson> SummarizeStartup(List<StartupRunJson> runs) =>
        runs.GroupBy(r => (r.Target, r.Process, r.Ready)).Select(g => new StartupSummaryJson(g.Key.Target, g.Key.Process, g.Key.Ready, Stat.Of(g.Select(r => r.ExecToReadyMs)))).ToList();

    private static Stat Compare(List<RunJson> runs, string phase, string target, string other, Func<ClientResult, ClientResult, double> compare)
    {
        RunJson? Find(int rep, string name) => runs.FirstOrDefault(r => r.Repetition == rep && r.Phase == phase && r.Target == name);
        return Stat.Of(runs.Select(r => r.Repetition).Distinct().Order().Select(rep =>
            Find(rep, target) is { } mine && Find(rep, other) is { } theirs ? compare(mine.Result, theirs.Result) : double.NaN));
    }

    public static List<CheckJson> Checks(IReadOnlyList<TargetSummaryJson> targets, IReadOnlyList<PhaseSummaryJson> phases, IReadOnlyList<StartupSummaryJson> startup,
        IReadOnlyList<FloorComparisonJson> runtimeFloor, ControlPlaneFiguresJson? controlPlane, int rate)
    {
        var inv = CultureInfo.InvariantCulture;
        var checks = new List<CheckJson>();
        var ztm = targets.Single(t => t.Target == DataPlaneReport.Ztm);
        if (targets.Any(t => t.Target == DataPlaneReport.Haproxy))
        {
            var ratio = ztm.CapacityVsHaproxy;
            checks.Add(new("sidecar-pair HTTP/1.1 capacity ≥ 1.0× HAProxy pair", "issues 4, 6", ratio.Format("0.00") + "×", ratio.Median >= 1.0,
                string.Create(inv, $"{(ratio.Median - 1) * 100:+0;-0}% (median of per-repetition ratios)")));
            foreach (var phase in phases.Where(p => p.Target == DataPlaneReport.Ztm && p.Phase != DataPlaneRun.NewConnection && p.VsHaproxy.N > 0))
            {
                checks.Add(new($"sidecar-pair {phase.Phase} capacity ≥ 1.0× HAProxy pair", "issue 6", phase.VsHaproxy.Format("0.00") + "×", phase.VsHaproxy.Median >= 1.0,
                    string.Create(inv, $"{(phase.VsHaproxy.Median - 1) * 100:+0;-0}%")));
            }
        }
        if (rate == 1000)
        {
            checks.Add(new("added p50 ≤ +1 ms at 1000 req/s", "issues 4, 6", ztm.AddedP50Ms.Format("+0.000;-0.000") + " ms", ztm.AddedP50Ms.Median <= 1.0,
                Spare(ztm.AddedP50Ms.Median, 1.0, "ms")));
            checks.Add(new("added p99 ≤ +3 ms at 1000 req/s", "issues 4, 6", ztm.AddedP99Ms.Format("+0.000;-0.000") + " ms", ztm.AddedP99Ms.Median <= 3.0,
                Spare(ztm.AddedP99Ms.Median, 3.0, "ms")));
        }
        foreach (var p in ztm.Processes)
        {
            checks.Add(new($"{p.Process} RSS idle ≤ 25 MB", "issues 4, 6",
                string.Create(inv, $"{p.IdleRssMb:0.0} MiB ({p.IdleRssMb * 1.048576:0.0} MB) settled, {DataPlaneRun.IdleSettleSeconds} s after the probes; {p.IdleRssAfterProbesMb:0.0} MiB at 3 s"),
                p.IdleRssMb * 1.048576 <= 25, string.Create(inv, $"{p.IdleRssMb * 1.048576 - 25:+0.0;-0.0} MB")));
            if (rate == 1000)
            {
                checks.Add(new($"{p.Process} peak RSS at 1000 req/s ≤ 40 MB", "issue 6", p.PeakRssAtRateMb.Format("0.0") + " MiB",
                    p.PeakRssAtRateMb.Median * 1.048576 <= 40, string.Create(inv, $"{p.PeakRssAtRateMb.Median * 1.048576 - 40:+0.0;-0.0} MB")));
                checks.Add(new($"{p.Process} ≤ 0.05 vCPU at 1000 req/s", "issue 6", p.CpuSecondsPer1000RequestsAtRate.Format("0.000") + " vCPU",
                    p.CpuSecondsPer1000RequestsAtRate.Median <= 0.05, string.Create(inv, $"{p.CpuSecondsPer1000RequestsAtRate.Median / 0.05:0.0}× the budget")));
            }
        }
        checks.AddRange(RuntimeFloorChecks(ztm, runtimeFloor, rate));
        foreach (var s in startup.Where(s => s.Target == DataPlaneReport.Ztm))
        {
            checks.Add(new("ztm-sidecar exec → ready ≤ 300 ms", "issue 6", s.ExecToReadyMs.Format("0") + " ms (" + s.Ready + ")", s.ExecToReadyMs.Median <= 300,
                string.Create(inv, $"{s.ExecToReadyMs.Median - 300:+0;-0} ms")));
        }
        if (controlPlane?.Signing is { } signing)
        {
            checks.Add(new("≥ 3,000 SVID signings/s over gRPC", "issue 6", signing.SigningsPerSecond.Format("0") + "/s", signing.SigningsPerSecond.Median >= 3000,
                string.Create(inv, $"{(signing.SigningsPerSecond.Median / 3000 - 1) * 100:+0;-0}%")));
        }
        if (controlPlane?.Propagation?.Levels.FirstOrDefault(l => l.Sidecars >= 5000) is { } level)
        {
            checks.Add(new("policy to 5,000 sidecars p99 ≤ 1 s", "issue 6", level.P99Ms.Format("0") + " ms (p99 per change, over the changes)", level.P99Ms.Max <= 1000,
                Spare(level.P99Ms.Max, 1000, "ms (worst change)")));
        }
        return checks;
    }

    /// <summary>Issue 20's targets: the sidecar pair against the runtime's floor, and the latency and memory it must not give up on the way.</summary>
    private static IEnumerable<CheckJson> RuntimeFloorChecks(TargetSummaryJson ztm, IReadOnlyList<FloorComparisonJson> runtimeFloor, int rate)
    {
        var inv = CultureInfo.InvariantCulture;
        if (runtimeFloor.FirstOrDefault(f => f.Phase == DataPlaneRun.Capacity) is { } capacity)
        {
            yield return new("sidecar pair HTTP/1.1 capacity ≥ 0.90× the floor-relay pair", "issue 20", capacity.SidecarVsFloor.Format("0.00") + "×",
                capacity.SidecarVsFloor.Median >= 0.90, string.Create(inv, $"{capacity.SidecarVsFloor.Median - 0.90:+0.00;-0.00}"));
            yield return new("sidecar pair CPU per request at capacity ≤ 1.1× the floor-relay pair's", "issue 20", capacity.CpuVsFloor.Format("0.00") + "×",
                capacity.CpuVsFloor.Median <= 1.1, string.Create(inv, $"{capacity.CpuVsFloor.Median - 1.1:+0.00;-0.00}"));
        }
        if (rate == 1000 && runtimeFloor.FirstOrDefault(f => f.Phase == DataPlaneRun.Rate) is { } atRate)
        {
            yield return new("sidecar pair vCPU at 1000 req/s ≤ 1.05× the floor-relay pair's", "issue 20", atRate.CpuVsFloor.Format("0.00") + "×",
                atRate.CpuVsFloor.Median <= 1.05, string.Create(inv, $"{atRate.CpuVsFloor.Median - 1.05:+0.00;-0.00}"));
            if (atRate.HaproxyPairCpu.N > 0)
            {
                var vsHaproxy = atRate.SidecarPairCpu.Median / atRate.HaproxyPairCpu.Median;
                yield return new("sidecar pair vCPU at 1000 req/s ≤ 1.5× the HAProxy pair's", "issue 20", string.Create(inv, $"{vsHaproxy:0.00}× (ratio of medians)"),
                    vsHaproxy <= 1.5, string.Create(inv, $"{vsHaproxy - 1.5:+0.00;-0.00}"));
            }
        }
        if (rate == 1000)
        {
            yield return new("added p99 ≤ +1.0 ms at 1000 req/s", "issue 20", ztm.AddedP99Ms.Format("+0.000;-0.000") + " ms", ztm.AddedP99Ms.Median <= 1.0,
                Spare(ztm.AddedP99Ms.Median, 1.0, "ms"));
        }
        foreach (var p in ztm.Processes)
        {
            yield return new($"{p.Process} RSS idle ≤ 22 MiB", "issue 20", string.Create(inv, $"{p.IdleRssMb:0.0} MiB"), p.IdleRssMb <= 22,
                string.Create(inv, $"{p.IdleRssMb - 22:+0.0;-0.0} MiB"));
            if (rate == 1000)
            {
                yield return new($"{p.Process} peak RSS at 1000 req/s ≤ 35 MiB", "issue 20", p.PeakRssAtRateMb.Format("0.0") + " MiB", p.PeakRssAtRateMb.Median <= 35,
                    string.Create(inv, $"{p.PeakRssAtRateMb.Median - 35:+0.0;-0.0} MiB"));
            }
        }
    }

    private static string Spare(double value, double limit, string unit) => value <= limit
        ? string.Create(CultureInfo.InvariantCulture, $"{limit - value:0.000} {unit} to spare")
        : string.Create(CultureInfo.InvariantCulture, $"over by {value - limit:0.000} {unit}");

    public static List<string> Notes(DataPlaneSettings settings, string? haproxySkipped, string? nginxSkipped, string? barePairSkipped)
    {
        var notes = new List<string>
        {
            "The sidecar pair checks the server's exact SPIFFE ID and logs one JSON access line per request per sidecar (drained by the harness); the HAProxy pair verifies chains against the same CA but not the URI SAN, and logs nothing; the nginx pair's server side verifies client certificates against the same CA; " + NginxPair.UpstreamVerification + "; nginx logs nothing (access_log off).",
            "HTTP between the proxies: the sidecar pair and the HAProxy pair use HTTP/2 (ALPN h2) over one kept-alive TLS connection pool; nginx's proxy module speaks HTTP/1.1 upstream (keep-alive over TLS), gRPC through nginx goes over HTTP/2 (grpc_pass grpcs://).",
            "nginx runs as one process (master_process off: one worker), so its CPU and memory are one PID's; HAProxy runs its default threads (one per core) in one process.",
            "The proxy connections are kept alive, so capacity and latency hold no handshakes; 'new connection' is the cost of one: a fresh TCP connection, a full TLS 1.3 handshake (no resumption) with a client SVID, one HTTP/2 request, close, against each pair's server side (the direct row is a plaintext HTTP/1.1 connection to the app).",
            "The load clients (wrk, h2load, the harness), the demo app, the control plane and the proxies share the host's cores: capacity is the capacity of the whole arrangement on this host.",
        };
        if (settings.Quick)
        {
            notes.Add("--quick: one short repetition with small numbers, no warm-up round, to see that the harness works end to end; do not read the figures.");
        }
        if (haproxySkipped is not null)
        {
            notes.Add($"HAProxy pair skipped ({haproxySkipped}): no ratios against it.");
        }
        if (nginxSkipped is not null)
        {
            notes.Add($"nginx pair skipped ({nginxSkipped}).");
        }
        if (barePairSkipped is not null)
        {
            notes.Add($"bare-stack pair skipped ({barePairSkipped}): no comparison of the sidecar with its own stack.");
        }
        else
        {
            notes.Add("The bare-stack pair (ztm-bare-proxy × 2) verifies certificate chains against the same CA both ways but no SPIFFE ID, authorizes nothing and logs nothing: it is the stack the sidecar is built on, doing the transport part of its job.");
        }
        if (settings.FloorRelay is null)
        {
            notes.Add("floor-relay pair skipped (no --floor-relay): no comparison with the runtime's floor.");
        }
        else
        {
            notes.Add("The floor-relay pair (ztm-floor-relay × 2) relays bytes: one TLS connection between the pair per client connection, so each wrk connection is one kept-alive mTLS connection end to end, and the app sees the client's own HTTP/1.1 or h2c. It verifies chains against the same CA both ways, no SPIFFE ID, and parses, authorizes and logs nothing.");
        }
        if (barePairSkipped is null && settings.BareProxy!.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
        {
            notes.Add("The bare-stack pair runs a .dll with dotnet (JIT), not the NativeAOT build the sidecar ships as.");
        }
        return notes;
    }
}
