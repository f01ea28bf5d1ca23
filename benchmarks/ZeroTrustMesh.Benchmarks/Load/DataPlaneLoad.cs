using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Runtime;
using System.Runtime.InteropServices;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// <c>dataplane-load</c>: the same upstream (<c>ztm-demo-app</c>, <c>GET /bytes/1024</c>, gRPC <c>Echo/Unary</c>) reached
/// directly, through the ZeroTrustMesh sidecar pair (frontend outbound → mTLS HTTP/2 → orders inbound → app, real
/// control plane and join tokens) and through an HAProxy pair and an nginx pair doing the same mTLS job, measured side
/// by side in one run, targets interleaved in every repetition:
/// 1. HTTP/1.1 keep-alive capacity (wrk), 2. HTTP/2 and 3. gRPC unary capacity (h2load, h2c into the client side),
/// 4. new-connection cost (one request per full mTLS handshake, against each pair's server side), 5. latency at a fixed
/// rate (open loop), 6. exec → ready of a fresh proxy, 7. API protection (<see cref="ApiProtectionPhase"/>: ApiSpec
/// validation and redaction through the sidecar pair); then the control plane (<see cref="ControlPlaneFigures"/>).
/// </summary>
internal static class DataPlaneLoad
{
    public const string PathAndQuery = "/bytes/1024";
    public const string ServiceHost = "orders";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    public static RootCommand Command()
    {
        var quick = new Option<bool>("--quick") { Description = "Smoke run: 1 repetition, no warm-up round, 1 s per run, small numbers, 50 simulated sidecars (figures not meaningful)" };
        var repetitions = new Option<int>("--repetitions") { Description = "Measured repetitions after the warm-up", DefaultValueFactory = _ => 3 };
        var capacity = CommandLineOptions.Duration("--capacity-duration", "HTTP/1.1 closed-loop run per target", "10s");
        var connections = new Option<int>("--connections") { Description = "HTTP/1.1 closed-loop connections", DefaultValueFactory = _ => 32 };
        var rateDuration = CommandLineOptions.Duration("--rate-duration", "Fixed-rate run per target", "10s");
        var rate = new Option<int>("--rate") { Description = "Requests per second of the fixed-rate run", DefaultValueFactory = _ => 1000 };
        var h2Duration = CommandLineOptions.Duration("--h2-duration", "HTTP/2 and gRPC closed-loop run per target (h2load)", "5s");
        var h2Clients = new Option<int>("--h2-clients") { Description = "h2load clients (connections)", DefaultValueFactory = _ => 8 };
        var h2Streams = new Option<int>("--h2-streams") { Description = "h2load concurrent streams per client", DefaultValueFactory = _ => 8 };
        var newConnDuration = CommandLineOptions.Duration("--newconn-duration", "New-connection (one request per mTLS handshake) run per target", "5s");
        var newConnWorkers = new Option<int>("--newconn-workers") { Description = "Concurrent new-connection loops", DefaultValueFactory = _ => 8 };
        var controlPlane = new Option<string?>("--controlplane") { Description = "ztm-controlplane.dll (default: this repository's Release build)" };
        var sidecar = new Option<string?>("--sidecar") { Description = "ztm-sidecar: the NativeAOT executable, or a .dll run with dotnet (default: the Release build's dll)" };
        var demoApp = new Option<string?>("--demo-app") { Description = "ztm-demo-app.dll (default: this repository's Release build)" };
        var results = new Option<string?>("--results") { Description = "Directory under which results/<utc>/ is written (default: <repo>/results)" };
        var noHaproxy = new Option<bool>("--no-haproxy") { Description = "Leave the HAProxy pair out" };
        var noNginx = new Option<bool>("--no-nginx") { Description = "Leave the nginx pair out" };
        var noControlPlane = new Option<bool>("--no-control-plane") { Description = "Leave out the control-plane figures (signing-load, policy-propagation)" };
        var sidecars = new Option<string>("--propagation-sidecars") { Description = "policy-propagation --sidecars (full run)", DefaultValueFactory = _ => "1000,5000" };
        var identities = new Option<int>("--propagation-identities") { Description = "policy-propagation --identities (full run)", DefaultValueFactory = _ => 50 };
        var bareProxy = new Option<string?>("--bare-proxy") { Description = "ztm-bare-proxy published with NativeAOT (benchmarks/ZeroTrustMesh.BareProxy): run idle beside the sidecars as the bare stack's memory floor, and as a pair (bare-stack-pair) doing the sidecar pair's job as the stack's capacity floor; without it both are skipped (a .dll: the pair runs, the memory row is skipped)" };
        var floorRelay = new Option<string?>("--floor-relay") { Description = "ztm-floor-relay published with NativeAOT (benchmarks/ZeroTrustMesh.FloorRelay): run as a pair (floor-relay-pair), the runtime's floor for the sidecar pair (issue 20); without it the pair is skipped" };
        var sidecarEnv = new Option<string[]>("--sidecar-env") { Description = "KEY=VALUE set in both sidecars' environment, to compare variants (e.g. DOTNET_GCgen0size=0x400000); repeatable" };
        var l4 = new Option<bool>("--l4") { Description = "Add ztm-sidecar-pair-l4: the sidecar pair in L4 mode (control plane --l4-mode on), its client in a network namespace with iptables capture; root only, needs ip and iptables (skipped with the reason otherwise)" };
        var apiDuration = CommandLineOptions.Duration("--api-duration", "Each paired run of the API protection phase (both routes together; p99 over more samples when longer)", "20s");
        var sidecarFlag = new Option<string[]>("--sidecar-flag") { Description = "NAME=VALUE passed to both measured sidecars as --NAME VALUE, to compare variants (e.g. http1-fast-path=true); repeatable" };
        var command = new RootCommand("dataplane-load: direct vs the ZeroTrustMesh sidecar pair vs HAProxy and nginx mTLS pairs, side by side, plus the control plane")
        {
            quick, repetitions, capacity, connections, rateDuration, rate, h2Duration, h2Clients, h2Streams, newConnDuration, newConnWorkers,
            controlPlane, sidecar, demoApp, results, noHaproxy, noNginx, noControlPlane, sidecars, identities, sidecarEnv, sidecarFlag, bareProxy, floorRelay, l4, apiDuration,
        };
        command.SetAction(async (result, cancellation) =>
        {
            string Default(string? given, string project, string name) =>
                Path.GetFullPath(given ?? Path.Combine(LoadHost.RepoRoot, project, "bin", "Release", "net10.0", name + ".dll"));
            var q = result.GetValue(quick);
            var one = TimeSpan.FromSeconds(1);
            var settings = new DataPlaneSettings(q, q ? 1 : result.GetValue(repetitions),
                q ? one : result.GetValue(capacity), q ? 8 : result.GetValue(connections), Math.Min(2, Environment.ProcessorCount),
                q ? one : result.GetValue(rateDuration), q ? 200 : result.GetValue(rate), q ? TimeSpan.FromSeconds(0.25) : TimeSpan.FromSeconds(2),
                q ? one : result.GetValue(h2Duration), q ? 2 : result.GetValue(h2Clients), q ? 4 : result.GetValue(h2Streams),
                q ? one : result.GetValue(newConnDuration), q ? 2 : result.GetValue(newConnWorkers),
                Default(result.GetValue(controlPlane), "control-plane/ZeroTrustMesh.ControlPlane", "ztm-controlplane"),
                Default(result.GetValue(sidecar), "sidecar/ZeroTrustMesh.Sidecar", "ztm-sidecar"),
                Default(result.GetValue(demoApp), "demo/ZeroTrustMesh.DemoApp", "ztm-demo-app"),
                Path.GetFullPath(result.GetValue(results) ?? Path.Combine(LoadHost.RepoRoot, "results")), result.GetValue(noHaproxy), result.GetValue(noNginx),
                result.GetValue(noControlPlane), result.GetValue(sidecars)!, result.GetValue(identities),
                (result.GetValue(sidecarEnv) ?? []).Select(e => e.Split('=', 2)).Where(kv => kv.Length == 2).ToDictionary(kv => kv[0], kv => kv[1]),
                result.GetValue(bareProxy) is { } bare ? Path.GetFullPath(bare) : null,
                result.GetValue(floorRelay) is { } floor ? Path.GetFullPath(floor) : null)
            {
                SidecarFlags = [.. (result.GetValue(sidecarFlag) ?? []).Select(f => f.Split('=', 2)).SelectMany(kv => kv.Length == 2 ? new[] { "--" + kv[0], kv[1] } : ["--" + kv[0]])],
                L4 = result.GetValue(l4),
                ApiDuration = q ? TimeSpan.Zero : result.GetValue(apiDuration),
            };
            if (settings.Repetitions < 1 || settings.Connections < 1 || settings.Rate < 1 || settings.H2Clients < 1 || settings.H2Streams < 1 || settings.NewConnectionWorkers < 1)
            {
                Console.Error.WriteLine("dataplane-load: --repetitions, --connections, --rate, --h2-clients, --h2-streams and --newconn-workers must be at least 1");
                return CommandLineOptions.UsageError;
            }
            foreach (var file in new[] { settings.ControlPlane, settings.Sidecar, settings.DemoApp, settings.BareProxy, settings.FloorRelay }.OfType<string>())
            {
                if (!File.Exists(file))
                {
                    Console.Error.WriteLine($"dataplane-load: {file} does not exist; build with 'dotnet build -c Release ZeroTrustMesh.sln' (benchmarks/run also publishes the sidecar and ztm-bare-proxy with NativeAOT)");
                    return 1;
                }
            }
            // The whole run is bounded: (warm-up + repetitions) × 6 targets × every phase, start-ups, the control plane, slack.
            var perTarget = settings.Capacity + settings.H2Duration * 2 + settings.NewConnectionDuration + settings.RateDuration + settings.Warmup + TimeSpan.FromSeconds(15);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            var apiPhase = (settings.PairedApiDuration * 2 + settings.RateDuration * 2 + (settings.Warmup + TimeSpan.FromSeconds(2)) * 4) * settings.Repetitions + StartTimeout;
            timeout.CancelAfter(perTarget * 7 * (settings.Repetitions + 1) + apiPhase + TimeSpan.FromMinutes(settings.NoControlPlane ? 3 : q ? 6 : 15));
            return await RunAsync(settings, timeout.Token);
        });
        return command;
    }

    private static async Task<int> RunAsync(DataPlaneSettings settings, CancellationToken cancellation)
    {
        var date = DateTimeOffset.UtcNow;
        var loadBefore = LoadHost.LoadAverage();
        var haproxySkipped = settings.NoHaproxy ? "--no-haproxy was given"
            : LoadHost.Which("haproxy") is null ? "haproxy is not installed (benchmarks/run installs it with apt when run as root)" : null;
        var nginxVersion = LoadHost.Which("nginx") is null ? null : NginxPair.InstalledVersion();
        var nginxSkipped = settings.NoNginx ? "--no-nginx was given"
            : nginxVersion is null ? "nginx is not installed (benchmarks/run installs nginx-light with apt when run as root)" : null;
        // The bare stack is a NativeAOT floor: a JIT build's RSS (runtime, JIT, IL) would say nothing about it.
        var bareSkipped = settings.BareProxy is null ? "no --bare-proxy given (benchmarks/run publishes ztm-bare-proxy with NativeAOT and passes it; --quick from the tests has no AOT build)"
            : settings.BareProxy.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? "--bare-proxy is a .dll (JIT): only a NativeAOT build is the floor being measured" : null;
        // The bare-stack pair measures the stack's capacity, not a memory floor: a JIT build (the tests' --quick) is kept, and the report says which.
        var barePairSkipped = settings.BareProxy is null ? "no --bare-proxy given (benchmarks/run publishes ztm-bare-proxy with NativeAOT and passes it)" : null;
        var floorPairSkipped = settings.FloorRelay is null ? "no --floor-relay given (benchmarks/run publishes ztm-floor-relay with NativeAOT and passes it)" : null;
        var l4Skipped = !settings.L4 ? "--l4 was not given" : CaptureNamespace.Unavailable();
        var h2loadSkipped = LoadHost.Which("h2load") is null ? "h2load is not installed (Debian nghttp2-client; benchmarks/run installs it when run as root)" : null;
        var wrk = LoadHost.Which("wrk");
        var capacityClient = wrk is not null ? $"wrk -t{settings.WrkThreads}" : "in-process HttpClient closed loop (wrk is not installed)";
        var dir = Path.Combine(settings.ResultsDir, date.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);

        var measured = await DataPlaneRun.MeasureAsync(settings, haproxySkipped, nginxSkipped, h2loadSkipped, bareSkipped, barePairSkipped, floorPairSkipped, wrk is not null, capacityClient, StartTimeout, cancellation, l4Skipped);

        ControlPlaneFiguresJson? controlPlaneFigures = null;
        if (!settings.NoControlPlane)
        {
            controlPlaneFigures = await ControlPlaneFigures.RunAsync(new ControlPlaneFigures.Options(settings.ControlPlane, dir, settings.Quick,
                settings.PropagationSidecars, settings.PropagationIdentities), cancellation);
        }

        var measuredRuns = measured.Runs.Where(r => r.Repetition > 0).ToList();
        var runtimeFloor = DataPlaneSummary.Floor(measuredRuns, DataPlaneReport.FloorPair);
        var machine = new MachineFactsJson(Environment.ProcessorCount, LoadHost.CpuModel(), LoadHost.Kernel(),
            RuntimeInformation.FrameworkDescription, LoadHost.FirstLine("dotnet", "--version"), GCSettings.IsServerGC ? "server" : $"workstation, {GCSettings.LatencyMode}",
            LoadHost.SidecarGc(), LoadHost.FirstLine("openssl", "version"), haproxySkipped is null ? LoadHost.FirstLine("haproxy", "-v") : "haproxy: not used",
            wrk is null ? "wrk: not installed" : LoadHost.FirstLine("wrk", "-v"), loadBefore, Stat.Of(measured.Runs.Select(r => r.LoadAverage1m)))
        {
            Nginx = NginxPair.Describe(nginxVersion),
            H2load = h2loadSkipped is null ? LoadHost.FirstLine("h2load", "--version") : "h2load: not installed",
        };
        var report = new DataPlaneReport(date, machine,
            new DataPlaneSettingsJson(settings.Quick, settings.Repetitions, settings.Capacity.TotalSeconds, settings.Connections, settings.WrkThreads,
                settings.RateDuration.TotalSeconds, settings.Rate, settings.Warmup.TotalSeconds, PathAndQuery,
                settings.Sidecar + string.Concat(settings.SidecarEnvironment.Select(kv => $" {kv.Key}={kv.Value}")) + string.Concat(settings.SidecarFlags.Select(f => " " + f)), capacityClient, haproxySkipped)
            {
                NginxSkipped = nginxSkipped,
                H2loadSkipped = h2loadSkipped,
                H2Seconds = settings.H2Duration.TotalSeconds,
                ApiPairedSeconds = settings.PairedApiDuration.TotalSeconds,
                H2Clients = settings.H2Clients,
                H2Streams = settings.H2Streams,
                NewConnectionSeconds = settings.NewConnectionDuration.TotalSeconds,
                NewConnectionWorkers = settings.NewConnectionWorkers,
                BareProxy = settings.BareProxy,
                BareProxySkipped = bareSkipped,
                BarePairSkipped = barePairSkipped,
                FloorRelay = settings.FloorRelay,
                FloorPairSkipped = floorPairSkipped,
                L4Skipped = l4Skipped,
            },
            measured.Targets, [.. DataPlaneSummary.Checks(measured.Targets, measured.Phases, measured.Startup, runtimeFloor, controlPlaneFigures, settings.Rate),
                .. ApiProtectionPhase.Checks(measured.ApiProtection, settings.Rate)],
            measured.Runs, DataPlaneSummary.Notes(settings, haproxySkipped, nginxSkipped, barePairSkipped))
        {
            Phases = measured.Phases,
            Startup = measured.Startup,
            IdleMemory = measured.IdleMemory,
            StartupRuns = measured.StartupRuns,
            StackFloor = DataPlaneSummary.Floor(measuredRuns, DataPlaneReport.BarePair),
            RuntimeFloor = runtimeFloor,
            L4Floor = DataPlaneSummary.Floor(measuredRuns, DataPlaneReport.FloorPair, DataPlaneReport.ZtmL4),
            ControlPlane = controlPlaneFigures,
            ApiProtection = measured.ApiProtection,
            ControlPlaneSkipped = settings.NoControlPlane ? "--no-control-plane was given" : null,
        };

        var markdown = report.ToMarkdown();
        await File.WriteAllTextAsync(Path.Combine(dir, "report.json"), report.ToJson(), CancellationToken.None);
        await File.WriteAllTextAsync(Path.Combine(dir, "report.md"), markdown, CancellationToken.None);
        Console.Out.WriteLine(markdown);
        Log($"wrote {dir}/report.md and report.json");
        return 0;
    }

    public static void Log(string message) => Console.Error.WriteLine($"dataplane-load: {message}");
}
