using System.CommandLine;
using System.Globalization;
using System.Text;
using ZeroTrustMesh.CommandLine;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// <c>idle-rss</c>: an idle sidecar's memory as a steady figure. One sample says little: an idle sidecar's RSS moves by
/// several MiB as its memory trimmer collects and unmaps code (measured: 23.9–29.8 MiB over 90 s), so a figure read
/// once lands anywhere in that range. Here each sidecar variant (an A/B: several <c>--sidecar</c>) is started against
/// a real control plane with the demo app as its app, left to settle, then sampled (<c>VmRSS</c>, <c>RssAnon</c>,
/// <c>RssFile</c> from <c>/proc/PID/status</c>) every interval for the whole duration; median, min and max per run, and
/// the median of the runs' medians per variant. The variants of one run idle side by side (same host, same moment),
/// and the trimmer's collections from readiness to the end are counted (<c>ztm_memory_trims_total</c>, scraped once
/// at readiness and once at the end: an idle sidecar should reach a steady state, not trim on and on). Every port is picked free.
/// </summary>
internal static class IdleRss
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private const string AdminLine = "ztm-sidecar: admin listening on ";
    private const string TrimsMetric = "ztm_memory_trims_total ";

    public static RootCommand Command()
    {
        var sidecar = new Option<string[]>("--sidecar")
        {
            Description = "ztm-sidecar to measure, as PATH or NAME=PATH (the NativeAOT executable, or a .dll run with dotnet); repeat it for an A/B: the variants idle side by side in every run",
            Required = true,
        };
        var runs = new Option<int>("--runs") { Description = "Runs, each with a fresh sidecar of every variant", DefaultValueFactory = _ => 3 };
        var settle = CommandLineOptions.Duration("--settle", "Wait after the sidecar is ready (certificate and first policy applied) before sampling", "20s");
        var duration = CommandLineOptions.Duration("--duration", "Sampling time per run", "60s");
        var interval = CommandLineOptions.Duration("--interval", "Time between samples", "2s");
        var controlPlane = new Option<string?>("--controlplane") { Description = "ztm-controlplane.dll (default: this repository's Release build)" };
        var demoApp = new Option<string?>("--demo-app") { Description = "ztm-demo-app.dll (default: this repository's Release build)" };
        var sidecarEnv = new Option<string[]>("--sidecar-env") { Description = "KEY=VALUE set in every sidecar's environment; repeatable" };
        var command = new RootCommand("idle-rss: an idle sidecar's resident memory, sampled over a minute after start-up settles (median, min, max), for one binary or an A/B")
        {
            sidecar, runs, settle, duration, interval, controlPlane, demoApp, sidecarEnv,
        };
        command.SetAction(async (result, cancellation) =>
        {
            string Default(string? given, string project, string name) =>
                Path.GetFullPath(given ?? Path.Combine(LoadHost.RepoRoot, project, "bin", "Release", "net10.0", name + ".dll"));
            var variants = new List<(string Name, string Path)>();
            foreach (var (given, index) in (result.GetValue(sidecar) ?? []).Select((s, i) => (s, i)))
            {
                var equals = given.IndexOf('=', StringComparison.Ordinal);
                var path = Path.GetFullPath(equals > 0 ? given[(equals + 1)..] : given);
                variants.Add((equals > 0 ? given[..equals] : $"sidecar-{(char)('A' + index)}", path));
            }
            var environment = new List<KeyValuePair<string, string>>();
            foreach (var pair in result.GetValue(sidecarEnv) ?? [])
            {
                if (pair.Split('=', 2) is not [{ Length: > 0 } key, var value])
                {
                    Console.Error.WriteLine($"idle-rss: --sidecar-env '{pair}' is not KEY=VALUE");
                    return CommandLineOptions.UsageError;
                }
                environment.Add(new(key, value));
            }
            var settings = new IdleRssSettings(variants, result.GetValue(runs), result.GetValue(settle), result.GetValue(duration), result.GetValue(interval),
                Default(result.GetValue(controlPlane), "control-plane/ZeroTrustMesh.ControlPlane", "ztm-controlplane"),
                Default(result.GetValue(demoApp), "demo/ZeroTrustMesh.DemoApp", "ztm-demo-app"), environment);
            if (settings.Runs < 1 || settings.Interval <= TimeSpan.Zero || settings.Duration < settings.Interval || settings.Settle < TimeSpan.Zero)
            {
                Console.Error.WriteLine("idle-rss: --runs must be at least 1, --interval above 0, --duration at least one interval, --settle not negative");
                return CommandLineOptions.UsageError;
            }
            if (variants.Select(v => v.Name).Distinct(StringComparer.Ordinal).Count() != variants.Count)
            {
                Console.Error.WriteLine("idle-rss: two --sidecar variants have the same name; name them NAME=PATH");
                return CommandLineOptions.UsageError;
            }
            foreach (var file in variants.Select(v => v.Path).Append(settings.ControlPlane).Append(settings.DemoApp))
            {
                if (!File.Exists(file))
                {
                    Console.Error.WriteLine($"idle-rss: {file} does not exist (benchmarks/idle-rss publishes the sidecar with NativeAOT and builds the rest)");
                    return 1;
                }
            }
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            timeout.CancelAfter((settings.Settle + settings.Duration + StartTimeout) * settings.Runs + StartTimeout * 2);
            var measured = await MeasureAsync(settings, timeout.Token);
            Console.Out.Write(Report(settings, measured));
            return 0;
        });
        return command;
    }

    private static async Task<List<IdleRun>> MeasureAsync(IdleRssSettings settings, CancellationToken cancellation)
    {
        await using var controlPlane = await ControlPlaneProcess.StartAsync(settings.ControlPlane, StartTimeout, "ztm-idle-rss-");
        var root = controlPlane.Root;
        var environment = new Dictionary<string, string> { ["HOME"] = root, ["ZTM_CONFIG"] = "", ["ZTM_DATA_DIR"] = "", ["DOTNET_NOLOGO"] = "1" };
        await using var app = LoadProcess.Start("demo-app", settings.DemoApp, ["--name", "orders", "--http-port", "0", "--grpc-port", "0", "--tcp-port", "-1"], environment);
        var appLine = (await app.WaitForLineAsync("http listening on http://", StartTimeout)).Line;
        app.Quiet();
        var appPort = new Uri(appLine[appLine.IndexOf("http://", StringComparison.Ordinal)..].Trim()).Port.ToString(CultureInfo.InvariantCulture);
        // A policy for the sidecars to receive, as in production (they count as ready once it is applied).
        await RetriedAsync("applying the policy", async () =>
        {
            await MeshSetup.AllowFrontendAsync(controlPlane, DataPlaneLoad.PathAndQuery, H2Load.GrpcPath, cancellation);
            return true;
        });
        var sidecarEnvironment = new Dictionary<string, string>(environment);
        foreach (var (key, value) in settings.SidecarEnvironment)
        {
            sidecarEnvironment[key] = value;
        }

        using var admin = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        var runs = new List<IdleRun>();
        for (var run = 1; run <= settings.Runs; run++)
        {
            var sidecars = new List<(string Variant, LoadProcess Process, Uri Metrics)>();
            try
            {
                foreach (var (variant, path) in settings.Variants)
                {
                    var process = await RetriedAsync("minting a join token", () => MeshSetup.StartSidecarAsync($"{variant}-{run}", "orders", path, controlPlane, root, sidecarEnvironment, cancellation, "--app-port", appPort));
                    sidecars.Add((variant, process, null!));
                    var adminLine = (await process.WaitForLineAsync(AdminLine, StartTimeout)).Line;
                    await process.WaitForLineAsync("config v1 applied", StartTimeout);
                    process.Quiet();
                    sidecars[^1] = (variant, process, new Uri(new Uri(adminLine[(adminLine.IndexOf(AdminLine, StringComparison.Ordinal) + AdminLine.Length)..].Split(' ')[0]), "/metrics"));
                }
                // The first scrape before settling: a scrape is traffic (the admin endpoint's code, its allocations), and
                // inside the window it would be measured, and trimmed after, as the sidecar's own doing.
                var trimsBefore = new List<double>();
                foreach (var sidecar in sidecars)
                {
                    trimsBefore.Add(await TrimsAsync(admin, sidecar.Metrics, cancellation));
                }
                Log($"run {run}/{settings.Runs}: {sidecars.Count} sidecar(s) ready; settling {settings.Settle.TotalSeconds:0} s, then sampling every {settings.Interval.TotalSeconds:0.#} s for {settings.Duration.TotalSeconds:0} s");
                await Task.Delay(settings.Settle, cancellation);
                var samples = sidecars.Select(_ => new List<RssSample>()).ToList();
                using (var timer = new PeriodicTimer(settings.Interval))
                {
                    var count = (int)(settings.Duration / settings.Interval);
                    for (var i = 0; i < count && await timer.WaitForNextTickAsync(cancellation); i++)
                    {
                        for (var s = 0; s < sidecars.Count; s++)
                        {
                            if (sidecars[s].Process.HasExited)
                            {
                                throw new InvalidOperationException($"{sidecars[s].Process.Name} exited while idle. Output:\n{sidecars[s].Process.Output}");
                            }
                            var split = sidecars[s].Process.MemorySplit();
                            samples[s].Add(new RssSample(split.RssMb, split.RssAnonMb, split.RssFileMb));
                        }
                    }
                }
                for (var s = 0; s < sidecars.Count; s++)
                {
                    var trims = await TrimsAsync(admin, sidecars[s].Metrics, cancellation) - trimsBefore[s];
                    runs.Add(new IdleRun(sidecars[s].Variant, run, samples[s], (int)trims, LoadHost.LoadAverage()));
                }
            }
            finally
            {
                foreach (var (_, process, _) in sidecars)
                {
                    await process.StopAsync(TimeSpan.FromSeconds(5));
                    await process.DisposeAsync();
                }
            }
        }
        return runs;
    }

    /// <summary>
    /// An operator call to the control plane, tried up to 5 times: on a loaded host its first TLS handshakes (JIT
    /// compiling) can outlast the channel's connect timeout.
    /// </summary>
    private static async Task<T> RetriedAsync<T>(string what, Func<Task<T>> call)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call();
            }
            catch (Grpc.Core.RpcException e) when (attempt < 5 && e.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.Cancelled or Grpc.Core.StatusCode.DeadlineExceeded)
            {
                Log($"{what} failed ({e.StatusCode}), attempt {attempt} of 5: trying again");
            }
        }
    }

    /// <summary>The trimmer's collections so far, from the sidecar's admin <c>/metrics</c> (a scrape, as Prometheus makes).</summary>
    private static async Task<double> TrimsAsync(HttpClient admin, Uri metrics, CancellationToken cancellation)
    {
        var text = await admin.GetStringAsync(metrics, cancellation);
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(TrimsMetric, StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"{metrics} has no {TrimsMetric.Trim()}");
        return double.Parse(line[TrimsMetric.Length..], CultureInfo.InvariantCulture);
    }

    /// <summary>The middle value (the mean of the two middle ones for an even count).</summary>
    internal static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            return double.NaN;
        }
        var middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }

    internal static string Report(IdleRssSettings settings, IReadOnlyList<IdleRun> runs)
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine(inv, $"## idle RSS ({DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC)");
        md.AppendLine();
        md.AppendLine(inv, $"{settings.Runs} run(s); each sidecar sampled every {settings.Interval.TotalSeconds:0.#} s for {settings.Duration.TotalSeconds:0} s, starting {settings.Settle.TotalSeconds:0} s after it was ready; the variants of a run idle side by side. MiB (`/proc/PID/status`).");
        foreach (var (name, path) in settings.Variants)
        {
            md.AppendLine(inv, $"- {name}: `{path}`");
        }
        md.AppendLine();
        md.AppendLine("| variant | run | VmRSS median (min..max) | RssAnon median (min..max) | RssFile median (min..max) | trims from ready to the end (a scrape at ready) | load average after |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (var run in runs)
        {
            md.AppendLine(inv, $"| {run.Variant} | {run.Run} | {Spread(run.Samples.Select(s => s.RssMb))} | {Spread(run.Samples.Select(s => s.RssAnonMb))} | {Spread(run.Samples.Select(s => s.RssFileMb))} | {run.Trims} | {run.LoadAverage:0.0} |");
        }
        md.AppendLine();
        md.AppendLine("| variant | VmRSS: median of the runs' medians (their range) | widest swing in a run (max − min) | RssAnon | RssFile | trims from ready to the end, most in a run |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var (name, _) in settings.Variants)
        {
            var mine = runs.Where(r => r.Variant == name).ToList();
            var medians = mine.Select(r => Median(r.Samples.Select(s => s.RssMb))).ToList();
            md.AppendLine(inv, $"| {name} | **{Median(medians):0.0}** ({medians.Min():0.0}..{medians.Max():0.0}) | {mine.Max(r => r.Samples.Max(s => s.RssMb) - r.Samples.Min(s => s.RssMb)):0.0} | " +
                $"{Median(mine.Select(r => Median(r.Samples.Select(s => s.RssAnonMb)))):0.0} | {Median(mine.Select(r => Median(r.Samples.Select(s => s.RssFileMb)))):0.0} | " +
                $"{mine.Max(r => r.Trims)} |");
        }
        return md.ToString();
    }

    private static string Spread(IEnumerable<double> values)
    {
        var list = values.ToList();
        return string.Create(CultureInfo.InvariantCulture, $"{Median(list):0.0} ({list.Min():0.0}..{list.Max():0.0})");
    }

    private static void Log(string message) => Console.Error.WriteLine($"idle-rss: {message}");
}

internal sealed record IdleRssSettings(IReadOnlyList<(string Name, string Path)> Variants, int Runs, TimeSpan Settle, TimeSpan Duration, TimeSpan Interval,
    string ControlPlane, string DemoApp, IReadOnlyList<KeyValuePair<string, string>> SidecarEnvironment);

internal readonly record struct RssSample(double RssMb, double RssAnonMb, double RssFileMb);

internal sealed record IdleRun(string Variant, int Run, IReadOnlyList<RssSample> Samples, int Trims, double LoadAverage);
