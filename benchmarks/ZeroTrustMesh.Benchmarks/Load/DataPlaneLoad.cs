using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Runtime;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Xml.Linq;
using Google.Protobuf;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using IdentityClient = ZeroTrustMesh.Proto.V1.Identity.IdentityClient;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// <c>dataplane-load</c>: the same upstream (<c>ztm-demo-app</c>, <c>GET /bytes/1024</c>) reached directly, through the
/// ZeroTrustMesh sidecar pair (frontend outbound → mTLS HTTP/2 → orders inbound → app, real control plane and join
/// tokens) and through an HAProxy pair doing the same job (plain HTTP in, TLS 1.3 with a client SVID out, verified
/// against the mesh CA; server side <c>verify required</c>, plain HTTP to the app), measured side by side in one run.
/// </summary>
internal static class DataPlaneLoad
{
    private const string PathAndQuery = "/bytes/1024";
    private const string ServiceHost = "orders";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private sealed record Settings(bool Quick, int Repetitions, TimeSpan Capacity, int Connections, int WrkThreads, TimeSpan RateDuration, int Rate, TimeSpan Warmup,
        string ControlPlane, string Sidecar, string DemoApp, string ResultsDir, bool NoHaproxy, IReadOnlyDictionary<string, string> SidecarEnvironment);

    private sealed record Target(string Name, string Description, Uri Url, string? Host, IReadOnlyList<LoadProcess> Proxies, HttpClient Client);

    public static RootCommand Command()
    {
        var quick = new Option<bool>("--quick") { Description = "Smoke run: 1 repetition, 2 s per run, short warm-up (figures not meaningful)" };
        var repetitions = new Option<int>("--repetitions") { Description = "Measured repetitions after the warm-up", DefaultValueFactory = _ => 3 };
        var capacity = CommandLineOptions.Duration("--capacity-duration", "Closed-loop run per target", "10s");
        var connections = new Option<int>("--connections") { Description = "Closed-loop connections", DefaultValueFactory = _ => 32 };
        var rateDuration = CommandLineOptions.Duration("--rate-duration", "Fixed-rate run per target", "10s");
        var rate = new Option<int>("--rate") { Description = "Requests per second of the fixed-rate run", DefaultValueFactory = _ => 1000 };
        var controlPlane = new Option<string?>("--controlplane") { Description = "ztm-controlplane.dll (default: this repository's Release build)" };
        var sidecar = new Option<string?>("--sidecar") { Description = "ztm-sidecar: the NativeAOT executable, or a .dll run with dotnet (default: the Release build's dll)" };
        var demoApp = new Option<string?>("--demo-app") { Description = "ztm-demo-app.dll (default: this repository's Release build)" };
        var results = new Option<string?>("--results") { Description = "Directory under which results/<utc>/ is written (default: <repo>/results)" };
        var noHaproxy = new Option<bool>("--no-haproxy") { Description = "Leave the HAProxy pair out" };
        var sidecarEnv = new Option<string[]>("--sidecar-env") { Description = "KEY=VALUE set in both sidecars' environment, to compare variants (e.g. DOTNET_GCgen0size=0x400000); repeatable" };
        var command = new RootCommand("dataplane-load: direct vs the ZeroTrustMesh sidecar pair vs an HAProxy mTLS pair, side by side")
        {
            quick, repetitions, capacity, connections, rateDuration, rate, controlPlane, sidecar, demoApp, results, noHaproxy, sidecarEnv,
        };
        command.SetAction(async (result, cancellation) =>
        {
            string Default(string? given, string project, string name) =>
                Path.GetFullPath(given ?? Path.Combine(RepoRoot, project, "bin", "Release", "net10.0", name + ".dll"));
            var isQuick = result.GetValue(quick);
            var settings = new Settings(isQuick, isQuick ? 1 : result.GetValue(repetitions),
                isQuick ? TimeSpan.FromSeconds(2) : result.GetValue(capacity), isQuick ? 8 : result.GetValue(connections), Math.Min(2, Environment.ProcessorCount),
                isQuick ? TimeSpan.FromSeconds(2) : result.GetValue(rateDuration), isQuick ? 200 : result.GetValue(rate),
                isQuick ? TimeSpan.FromSeconds(0.5) : TimeSpan.FromSeconds(2),
                Default(result.GetValue(controlPlane), "control-plane/ZeroTrustMesh.ControlPlane", "ztm-controlplane"),
                Default(result.GetValue(sidecar), "sidecar/ZeroTrustMesh.Sidecar", "ztm-sidecar"),
                Default(result.GetValue(demoApp), "demo/ZeroTrustMesh.DemoApp", "ztm-demo-app"),
                Path.GetFullPath(result.GetValue(results) ?? Path.Combine(RepoRoot, "results")), result.GetValue(noHaproxy),
                (result.GetValue(sidecarEnv) ?? []).Select(e => e.Split('=', 2)).Where(kv => kv.Length == 2).ToDictionary(kv => kv[0], kv => kv[1]));
            if (settings.Repetitions < 1 || settings.Connections < 1 || settings.Rate < 1)
            {
                Console.Error.WriteLine("dataplane-load: --repetitions, --connections and --rate must be at least 1");
                return CommandLineOptions.UsageError;
            }
            foreach (var file in new[] { settings.ControlPlane, settings.Sidecar, settings.DemoApp })
            {
                if (!File.Exists(file))
                {
                    Console.Error.WriteLine($"dataplane-load: {file} does not exist; build with 'dotnet build -c Release ZeroTrustMesh.sln' (benchmarks/run also publishes the sidecar with NativeAOT)");
                    return 1;
                }
            }
            // The whole run is bounded: (warm-up + repetitions) × 3 targets × 2 phases, plus start-up and slack.
            var perRound = (settings.Capacity + settings.RateDuration + settings.Warmup + TimeSpan.FromSeconds(5)) * 3;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            timeout.CancelAfter(perRound * (settings.Repetitions + 1) + TimeSpan.FromMinutes(3));
            return await RunAsync(settings, timeout.Token);
        });
        return command;
    }

    private static string RepoRoot =>
        typeof(DataPlaneLoad).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepoRoot").Value!;

    private static async Task<int> RunAsync(Settings settings, CancellationToken cancellation)
    {
        var date = DateTimeOffset.UtcNow;
        var loadBefore = LoadAverage();
        var haproxySkipped = settings.NoHaproxy ? "--no-haproxy was given"
            : Which("haproxy") is null ? "haproxy is not installed (benchmarks/run installs it with apt when run as root)" : null;
        var wrk = Which("wrk");
        var capacityClient = wrk is not null ? $"wrk -t{settings.WrkThreads}" : "in-process HttpClient closed loop (wrk is not installed)";
        var processes = new List<LoadProcess>();
        var clients = new List<HttpClient>();
        await using var controlPlane = await ControlPlaneProcess.StartAsync(settings.ControlPlane, StartTimeout, "ztm-dataplane-load-");
        var root = controlPlane.Root;
        var environment = new Dictionary<string, string> { ["HOME"] = root, ["ZTM_CONFIG"] = "", ["ZTM_DATA_DIR"] = "", ["DOTNET_NOLOGO"] = "1" };
        var sidecarEnvironment = new Dictionary<string, string>(environment);
        foreach (var (key, value) in settings.SidecarEnvironment)
        {
            sidecarEnvironment[key] = value;
        }
        try
        {
            Log($"control plane pid {controlPlane.Pid} at {controlPlane.Address}");
            var bundlePath = Path.Combine(controlPlane.DataDir, "bundle.pem");

            // The upstream every target reaches.
            var app = Track(LoadProcess.Start("demo-app", settings.DemoApp, ["--name", "orders", "--http-port", "0", "--grpc-port", "0", "--tcp-port", "-1"], environment));
            var appLine = (await app.WaitForLineAsync("http listening on http://", StartTimeout)).Line;
            var appUrl = new Uri(appLine[appLine.IndexOf("http://", StringComparison.Ordinal)..].Trim());
            app.Quiet();

            // The sidecar pair: tokens minted with the operator credential, orders registered before the frontend starts,
            // and a policy that allows the frontend's call (authorization is on, as in production).
            await AllowFrontendAsync(controlPlane, cancellation);
            var ordersToken = await MintAsync(controlPlane, "orders", cancellation);
            var frontendToken = await MintAsync(controlPlane, "frontend", cancellation);
            var orders = Track(StartSidecar("orders-sidecar", settings.Sidecar, controlPlane, bundlePath, ordersToken, root, sidecarEnvironment, "--app-port", appUrl.Port.ToString(CultureInfo.InvariantCulture)));
            await orders.WaitForLineAsync("registered with the control plane", StartTimeout);
            var ordersReady = await orders.WaitForLineAsync("policy v1 applied", StartTimeout);
            orders.Quiet();
            var frontend = Track(StartSidecar("frontend-sidecar", settings.Sidecar, controlPlane, bundlePath, frontendToken, root, sidecarEnvironment));
            var outboundLine = (await frontend.WaitForLineAsync("ztm-sidecar: outbound listening on ", StartTimeout)).Line;
            var frontendReady = await frontend.WaitForLineAsync("registered with the control plane", StartTimeout);
            frontend.Quiet();
            var outbound = IPEndPoint.Parse(outboundLine["ztm-sidecar: outbound listening on ".Length..].Trim());
            var execToReady = new Dictionary<LoadProcess, double> { [orders] = ordersReady.MsSinceStart, [frontend] = frontendReady.MsSinceStart };

            var targets = new List<Target>
            {
                new(DataPlaneReport.Direct, "client → demo app", new Uri(appUrl, PathAndQuery), ServiceHost, [], NewClient()),
                new(DataPlaneReport.Ztm, "client → frontend sidecar outbound (Host: orders) → mTLS HTTP/2 → orders sidecar inbound → demo app",
                    new Uri($"http://{outbound}{PathAndQuery}"), ServiceHost, [frontend, orders], NewClient()),
            };
            if (haproxySkipped is null)
            {
                var (client, server, url) = await StartHaproxyPairAsync(controlPlane, appUrl, root, environment, cancellation);
                Track(client);
                Track(server);
                targets.Add(new(DataPlaneReport.Haproxy, "client → haproxy (HTTP in, TLS 1.3 + client SVID out, HTTP/2) → haproxy (verify required, HTTP/1.1 out) → demo app",
                    url, ServiceHost, [client, server], NewClient()));
            }
            else
            {
                Log($"HAProxy pair skipped: {haproxySkipped}");
            }
            foreach (var target in targets)
            {
                await LoadClients.WaitUntilServingAsync(target.Client, target.Url, target.Host, TimeSpan.FromSeconds(30), target.Name);
            }

            // Idle memory: after start-up and one request, before any load.
            await Task.Delay(TimeSpan.FromSeconds(settings.Quick ? 0.5 : 3), cancellation);
            var idle = targets.SelectMany(t => t.Proxies).ToDictionary(p => p, p => p.Memory().RssMb);

            var runs = new List<RunJson>();
            for (var rep = 0; rep <= settings.Repetitions; rep++)
            {
                var warm = rep == 0;
                var capacityTime = warm ? TimeSpan.FromSeconds(settings.Quick ? 1 : 3) : settings.Capacity;
                var rateTime = warm ? TimeSpan.FromSeconds(settings.Quick ? 1 : 3) : settings.RateDuration;
                foreach (var target in targets)
                {
                    runs.Add(await MeasureAsync(rep, "capacity", target, capacityClient, () => wrk is not null
                        ? LoadClients.WrkAsync(target.Url, target.Host, settings.Connections, settings.WrkThreads, capacityTime, cancellation)
                        : LoadClients.ClosedLoopAsync(target.Client, target.Url, target.Host, settings.Connections, capacityTime, cancellation)));
                }
                foreach (var target in targets)
                {
                    runs.Add(await MeasureAsync(rep, "rate", target, $"open loop {settings.Rate}/s", () =>
                        LoadClients.FixedRateAsync(target.Client, target.Url, target.Host, settings.Rate, settings.Warmup, rateTime, cancellation)));
                }
            }
            var after = targets.SelectMany(t => t.Proxies).ToDictionary(p => p, p => p.Memory().RssMb);
            var measured = runs.Where(r => r.Repetition > 0).ToList();

            var summaries = targets.Select(t => Summarize(t, measured, idle, after, execToReady)).ToList();
            var sidecarGc = SidecarGc();
            var machine = new MachineFactsJson(Environment.ProcessorCount, CpuModel(), File.ReadAllText("/proc/sys/kernel/osrelease").Trim(),
                RuntimeInformation.FrameworkDescription, FirstLine("dotnet", "--version"), GCSettings.IsServerGC ? "server" : $"workstation, {GCSettings.LatencyMode}",
                sidecarGc, FirstLine("openssl", "version"), haproxySkipped is null ? FirstLine("haproxy", "-v") : "haproxy: not used",
                wrk is null ? "wrk: not installed" : FirstLine("wrk", "-v"), loadBefore, Stat.Of(runs.Select(r => r.LoadAverage1m)));
            var report = new DataPlaneReport(date, machine,
                new DataPlaneSettingsJson(settings.Quick, settings.Repetitions, settings.Capacity.TotalSeconds, settings.Connections, settings.WrkThreads,
                    settings.RateDuration.TotalSeconds, settings.Rate, settings.Warmup.TotalSeconds, PathAndQuery, settings.Sidecar + string.Concat(settings.SidecarEnvironment.Select(kv => $" {kv.Key}={kv.Value}")), capacityClient, haproxySkipped),
                summaries, Checks(summaries, settings.Rate), runs, Notes(settings, haproxySkipped));

            var dir = Path.Combine(settings.ResultsDir, date.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture));
            Directory.CreateDirectory(dir);
            var markdown = report.ToMarkdown();
            await File.WriteAllTextAsync(Path.Combine(dir, "report.json"), report.ToJson(), CancellationToken.None);
            await File.WriteAllTextAsync(Path.Combine(dir, "report.md"), markdown, CancellationToken.None);
            Console.Out.WriteLine(markdown);
            Log($"wrote {dir}/report.md and report.json");
            return 0;
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
            for (var i = processes.Count - 1; i >= 0; i--)
            {
                await processes[i].DisposeAsync();
            }
            await controlPlane.StopAsync(TimeSpan.FromSeconds(10));
        }

        LoadProcess Track(LoadProcess process)
        {
            processes.Add(process);
            Log($"{process.Name} pid {process.Pid}");
            return process;
        }

        HttpClient NewClient()
        {
            var client = LoadClients.Client(256);
            clients.Add(client);
            return client;
        }
    }

    /// <summary>One run with the proxies' CPU read around it and their peak RSS reset before it.</summary>
    private static async Task<RunJson> MeasureAsync(int rep, string phase, Target target, string client, Func<Task<ClientResult>> run)
    {
        var load = LoadAverage();
        foreach (var proxy in target.Proxies)
        {
            proxy.ResetPeak();
        }
        var cpu0 = target.Proxies.Select(p => p.CpuTime()).ToArray();
        var result = await run();
        var processes = target.Proxies.Select((p, i) =>
        {
            var cpu = (p.CpuTime() - cpu0[i]).TotalSeconds;
            return new ProcessRunJson(p.Name, cpu, result.Sent == 0 ? double.NaN : cpu * 1000 / result.Sent, p.Memory().PeakRssMb);
        }).ToList();
        Log(string.Create(CultureInfo.InvariantCulture,
            $"rep {rep}{(rep == 0 ? " (warm-up)" : "")} {phase} {target.Name}: {result.PerSecond:0}/s errors {result.Errors} p50 {result.P50Ms:0.000} p90 {result.P90Ms:0.000} p99 {result.P99Ms:0.000} ms; load {load:0.00}"));
        return new RunJson(rep, phase, target.Name, client, result, processes, load);
    }

    private static TargetSummaryJson Summarize(Target target, List<RunJson> runs, Dictionary<LoadProcess, double> idle, Dictionary<LoadProcess, double> after,
        Dictionary<LoadProcess, double> execToReady)
    {
        RunJson? Find(int rep, string phase, string name) => runs.FirstOrDefault(r => r.Repetition == rep && r.Phase == phase && r.Target == name);
        var reps = runs.Select(r => r.Repetition).Distinct().Order().ToList();
        Stat Over(string phase, Func<ClientResult, double> figure) => Stat.Of(runs.Where(r => r.Phase == phase && r.Target == target.Name).Select(r => figure(r.Result)));
        Stat PerRep(string phase, string other, Func<ClientResult, ClientResult, double> compare) => Stat.Of(reps.Select(rep =>
            Find(rep, phase, target.Name) is { } mine && Find(rep, phase, other) is { } theirs ? compare(mine.Result, theirs.Result) : double.NaN));
        var processes = target.Proxies.Select(p =>
        {
            Stat Figure(string phase, Func<ProcessRunJson, double> figure) =>
                Stat.Of(runs.Where(r => r.Phase == phase && r.Target == target.Name).SelectMany(r => r.Processes).Where(x => x.Process == p.Name).Select(figure));
            return new ProcessSummaryJson(p.Name, p.Pid, execToReady.GetValueOrDefault(p, double.NaN), idle[p], after[p],
                Figure("capacity", x => x.PeakRssMb), Figure("rate", x => x.PeakRssMb),
                Figure("capacity", x => x.CpuSecondsPer1000Requests), Figure("rate", x => x.CpuSecondsPer1000Requests));
        }).ToList();
        return new TargetSummaryJson(target.Name, target.Description,
            Over("capacity", r => r.PerSecond), Over("capacity", r => r.Errors),
            PerRep("capacity", DataPlaneReport.Direct, (a, b) => a.PerSecond / b.PerSecond),
            PerRep("capacity", DataPlaneReport.Haproxy, (a, b) => a.PerSecond / b.PerSecond),
            Over("rate", r => r.P50Ms), Over("rate", r => r.P90Ms), Over("rate", r => r.P99Ms), Over("rate", r => r.Errors),
            PerRep("rate", DataPlaneReport.Direct, (a, b) => a.P50Ms - b.P50Ms),
            PerRep("rate", DataPlaneReport.Direct, (a, b) => a.P90Ms - b.P90Ms),
            PerRep("rate", DataPlaneReport.Direct, (a, b) => a.P99Ms - b.P99Ms),
            PerRep("rate", DataPlaneReport.Haproxy, (a, b) => a.P99Ms / b.P99Ms),
            processes);
    }

    private static List<CheckJson> Checks(List<TargetSummaryJson> targets, int rate)
    {
        var inv = CultureInfo.InvariantCulture;
        var checks = new List<CheckJson>();
        var ztm = targets.Single(t => t.Target == DataPlaneReport.Ztm);
        if (targets.Any(t => t.Target == DataPlaneReport.Haproxy))
        {
            var ratio = ztm.CapacityVsHaproxy;
            checks.Add(new("sidecar-pair capacity ≥ 1.0× HAProxy pair", "issues 4, 6", ratio.Format("0.00") + "×", ratio.Median >= 1.0,
                string.Create(inv, $"{(ratio.Median - 1) * 100:+0;-0}% (median of per-repetition ratios)")));
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
            checks.Add(new($"{p.Process} RSS idle ≤ 25 MB", "issues 4, 6", string.Create(inv, $"{p.IdleRssMb:0.0} MiB ({p.IdleRssMb * 1.048576:0.0} MB)"),
                p.IdleRssMb * 1.048576 <= 25, string.Create(inv, $"{p.IdleRssMb * 1.048576 - 25:+0.0;-0.0} MB")));
            if (rate == 1000)
            {
                checks.Add(new($"{p.Process} peak RSS at 1000 req/s ≤ 40 MB", "issue 6", p.PeakRssAtRateMb.Format("0.0") + " MiB",
                    p.PeakRssAtRateMb.Median * 1.048576 <= 40, string.Create(inv, $"{p.PeakRssAtRateMb.Median * 1.048576 - 40:+0.0;-0.0} MB")));
                checks.Add(new($"{p.Process} ≤ 0.05 vCPU at 1000 req/s", "issue 6", p.CpuSecondsPer1000RequestsAtRate.Format("0.000") + " vCPU",
                    p.CpuSecondsPer1000RequestsAtRate.Median <= 0.05, string.Create(inv, $"{p.CpuSecondsPer1000RequestsAtRate.Median / 0.05:0.0}× the budget")));
            }
            checks.Add(new($"{p.Process} exec → ready ≤ 300 ms", "issue 6", string.Create(inv, $"{p.ExecToReadyMs:0} ms (to 'registered', SVID signed)"),
                p.ExecToReadyMs <= 300, string.Create(inv, $"{p.ExecToReadyMs - 300:+0;-0} ms")));
        }
        return checks;
    }

    private static string Spare(double value, double limit, string unit) => value <= limit
        ? string.Create(CultureInfo.InvariantCulture, $"{limit - value:0.000} {unit} to spare")
        : string.Create(CultureInfo.InvariantCulture, $"over by {value - limit:0.000} {unit}");

    private static List<string> Notes(Settings settings, string? haproxySkipped)
    {
        var notes = new List<string>
        {
            "The sidecar pair checks the server's exact SPIFFE ID and logs one JSON access line per request per sidecar (drained by the harness); the HAProxy pair verifies chains against the same CA but not the URI SAN, and logs nothing.",
            "Both pairs use SVIDs from the same control plane CA (ECDSA P-256), TLS 1.3 and HTTP/2 between the proxies; the proxy connections are kept alive, so the figures hold no handshakes.",
            "The load clients (wrk, the harness), the demo app, the control plane and the proxies share the host's cores: capacity is the capacity of the whole arrangement on this host.",
        };
        if (settings.Quick)
        {
            notes.Add("--quick: one short repetition with small numbers, to see that the harness works end to end; do not read the figures.");
        }
        if (haproxySkipped is not null)
        {
            notes.Add($"HAProxy pair skipped ({haproxySkipped}): no ratios against it.");
        }
        return notes;
    }

    private static LoadProcess StartSidecar(string name, string sidecar, ControlPlaneProcess controlPlane, string bundlePath, string token, string root,
        IReadOnlyDictionary<string, string> environment, params string[] extra)
    {
        var tokenFile = Path.Combine(root, name + ".token");
        File.WriteAllText(tokenFile, token);
        return LoadProcess.Start(name, sidecar,
            ["--control-plane", controlPlane.Address.ToString(), "--trust-bundle", bundlePath, "--join-token-file", tokenFile,
                "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0", .. extra], environment);
    }

    private static async Task<string> MintAsync(ControlPlaneProcess controlPlane, string serviceAccount, CancellationToken cancellation)
    {
        var bundle = controlPlane.Bundle;
        using var operatorCertificate = controlPlane.OperatorCertificate;
        using var admin = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => operatorCertificate, TimeProvider.System);
        var created = await new IdentityAdmin.IdentityAdminClient(admin).CreateJoinTokenAsync(
            new CreateJoinTokenRequest { Namespace = "shop", ServiceAccount = serviceAccount, TtlSeconds = 600 }, cancellationToken: cancellation);
        return created.Token;
    }

    /// <summary>The policy of the measured call: frontend may GET the benchmark path on orders.</summary>
    private static async Task AllowFrontendAsync(ControlPlaneProcess controlPlane, CancellationToken cancellation)
    {
        var bundle = controlPlane.Bundle;
        using var operatorCertificate = controlPlane.OperatorCertificate;
        using var admin = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => operatorCertificate, TimeProvider.System);
        await new PolicyAdmin.PolicyAdminClient(admin).ApplyAsync(new ApplyRequest
        {
            Source = "benchmark.yaml",
            Yaml = $$"""
                apiVersion: security.ztm.dev/v1
                kind: AuthorizationPolicy
                metadata:
                  name: orders-from-frontend
                  namespace: shop
                spec:
                  selector:
                    service: orders
                  action: ALLOW
                  rules:
                    - from:
                        - source:
                            principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
                      to:
                        - operation:
                            methods: ["GET"]
                            paths: ["{{PathAndQuery}}"]
                """,
        }, cancellationToken: cancellation);
    }

    /// <summary>An SVID from the real Identity API (join token + CSR), as PEM certificate + key, for a proxy that is not a sidecar.</summary>
    private static async Task<string> SvidPemAsync(ControlPlaneProcess controlPlane, string serviceAccount, CancellationToken cancellation)
    {
        var token = await MintAsync(controlPlane, serviceAccount, cancellation);
        var bundle = controlPlane.Bundle;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=ZeroTrustMesh", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(SubjectAltNames.ForUri($"spiffe://{SpiffeId.DefaultTrustDomain}/ns/shop/sa/{serviceAccount}"));
        using var anonymous = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => null, TimeProvider.System);
        var signed = await new IdentityClient(anonymous).SignCertificateAsync(
            new SignCertificateRequest { Csr = ByteString.CopyFrom(request.CreateSigningRequest()), JoinToken = token }, cancellationToken: cancellation);
        var pem = string.Concat(signed.CertificateChain.Select(der => PemEncoding.WriteString("CERTIFICATE", der.Span) + "\n"));
        return pem + key.ExportPkcs8PrivateKeyPem() + "\n";
    }

    /// <summary>
    /// The HAProxy pair, configured in the run's temporary directory: the client side takes plain HTTP and opens TLS 1.3
    /// with its SVID as client certificate to the server side (HTTP/2 by ALPN), verifying the server's chain against the
    /// mesh CA; the server side requires and verifies client certificates against the same CA and sends plain HTTP/1.1 to the app.
    /// </summary>
    private static async Task<(LoadProcess Client, LoadProcess Server, Uri Url)> StartHaproxyPairAsync(ControlPlaneProcess controlPlane, Uri app, string root,
        IReadOnlyDictionary<string, string> environment, CancellationToken cancellation)
    {
        var dir = Directory.CreateDirectory(Path.Combine(root, "haproxy")).FullName;
        var ca = Path.Combine(dir, "ca.pem");
        File.Copy(Path.Combine(controlPlane.DataDir, "bundle.pem"), ca);
        Pem.WriteSecret(Path.Combine(dir, "client.pem"), await SvidPemAsync(controlPlane, "haproxy-client", cancellation));
        Pem.WriteSecret(Path.Combine(dir, "server.pem"), await SvidPemAsync(controlPlane, "haproxy-server", cancellation));
        var clientPort = FreePort();
        var serverPort = FreePort();
        const string Common = """
            global
                ssl-default-bind-options ssl-min-ver TLSv1.3
                ssl-default-server-options ssl-min-ver TLSv1.3
            defaults
                mode http
                timeout connect 2s
                timeout client 30s
                timeout server 30s
                timeout http-keep-alive 30s

            """;
        var clientConfig = Path.Combine(dir, "client.cfg");
        await File.WriteAllTextAsync(clientConfig, Common + $"""
            frontend outbound
                bind 127.0.0.1:{clientPort}
                default_backend orders
            backend orders
                http-reuse always
                server orders 127.0.0.1:{serverPort} ssl crt {dir}/client.pem ca-file {ca} verify required alpn h2

            """, cancellation);
        var serverConfig = Path.Combine(dir, "server.cfg");
        await File.WriteAllTextAsync(serverConfig, Common + $"""
            frontend inbound
                bind 127.0.0.1:{serverPort} ssl crt {dir}/server.pem ca-file {ca} verify required alpn h2,http/1.1
                http-request set-header x-ztm-client-identity %[ssl_c_s_dn]
                default_backend app
            backend app
                server app 127.0.0.1:{app.Port}

            """, cancellation);
        var server = LoadProcess.Start("haproxy-server", "haproxy", ["-db", "-f", serverConfig], environment);
        var client = LoadProcess.Start("haproxy-client", "haproxy", ["-db", "-f", clientConfig], environment);
        server.Quiet();
        client.Quiet();
        foreach (var (process, port) in new[] { (server, serverPort), (client, clientPort) })
        {
            await WaitForPortAsync(process, port, TimeSpan.FromSeconds(15));
        }
        return (client, server, new Uri($"http://127.0.0.1:{clientPort}{PathAndQuery}"));
    }

    private static async Task WaitForPortAsync(LoadProcess process, int port, TimeSpan timeout)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline && !process.HasExited)
        {
            try
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(100);
            }
        }
        throw new InvalidOperationException($"{process.Name} is not listening on 127.0.0.1:{port}{(process.HasExited ? " (it exited)" : "")}. Output:\n{process.Output}");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static double LoadAverage() =>
        double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);

    private static string CpuModel() =>
        File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";

    /// <summary>The GC the sidecar is built with (its csproj; NativeAOT bakes it in, no runtimeconfig to read).</summary>
    private static string SidecarGc()
    {
        var project = XDocument.Load(Path.Combine(RepoRoot, "sidecar/ZeroTrustMesh.Sidecar/ZeroTrustMesh.Sidecar.csproj"));
        string? Property(string name) => project.Descendants(name).FirstOrDefault()?.Value;
        var server = Property("ServerGarbageCollection") == "true" ? "server" : "workstation";
        var concurrent = Property("ConcurrentGarbageCollection") == "false" ? "non-concurrent" : "concurrent";
        return $"{server}, {concurrent} (sidecar csproj)";
    }

    private static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);

    private static string FirstLine(string file, string args)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
            var text = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
            process.WaitForExit(5000);
            return text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? file;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return $"{file}: not found";
        }
    }

    private static void Log(string message) => Console.Error.WriteLine($"dataplane-load: {message}");
}
