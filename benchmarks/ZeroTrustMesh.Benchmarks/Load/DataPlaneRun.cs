using System.Globalization;
using System.Net;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Benchmarks.Load;

internal sealed record MeasuredDataPlane(IReadOnlyList<TargetSummaryJson> Targets, IReadOnlyList<PhaseSummaryJson> Phases, IReadOnlyList<StartupSummaryJson> Startup,
    IReadOnlyList<StartupRunJson> StartupRuns, IReadOnlyList<RunJson> Runs, IReadOnlyList<IdleMemoryJson> IdleMemory, ApiProtectionJson ApiProtection);

/// <summary>
/// The data-plane part of <c>dataplane-load</c>: starts the control plane, the app, the sidecar pair and the external
/// pairs (each process by PID, each start awaited on a line or a port with a timeout), then runs the phases, every
/// target in turn within each phase of each repetition (A B C D, A B C D, …), and stops everything it started.
/// </summary>
internal static class DataPlaneRun
{
    public const string Capacity = "capacity";
    public const string Http2 = "h2";
    public const string Grpc = "grpc";
    public const string NewConnection = "newconn";
    public const string Rate = "rate";

    public static async Task<MeasuredDataPlane> MeasureAsync(DataPlaneSettings settings, string? haproxySkipped, string? nginxSkipped, string? h2loadSkipped, string? bareSkipped, string? barePairSkipped, string? floorPairSkipped, bool useWrk,
        string capacityClient, TimeSpan startTimeout, CancellationToken cancellation, string? l4Skipped = null)
    {
        var processes = new List<LoadProcess>();
        L4SidecarPair? l4 = null;
        var clients = new List<HttpClient>();
        await using var controlPlane = await ControlPlaneProcess.StartAsync(settings.ControlPlane, startTimeout, "ztm-dataplane-load-");
        var root = controlPlane.Root;
        var environment = new Dictionary<string, string> { ["HOME"] = root, ["ZTM_CONFIG"] = "", ["ZTM_DATA_DIR"] = "", ["DOTNET_NOLOGO"] = "1" };
        var sidecarEnvironment = new Dictionary<string, string>(environment);
        foreach (var (key, value) in settings.SidecarEnvironment)
        {
            sidecarEnvironment[key] = value;
        }
        try
        {
            DataPlaneLoad.Log($"control plane pid {controlPlane.Pid} at {controlPlane.Address}");
            var app = Track(LoadProcess.Start("demo-app", settings.DemoApp, ["--name", "orders", "--http-port", "0", "--grpc-port", "0", "--tcp-port", "-1"], environment));
            var appUrl = ListenerUrl((await app.WaitForLineAsync("http listening on http://", startTimeout)).Line);
            var appGrpc = ListenerUrl((await app.WaitForLineAsync("grpc listening on http://", startTimeout)).Line);
            app.Quiet();
            var appPort = appUrl.Port.ToString(CultureInfo.InvariantCulture);
            var grpcPort = appGrpc.Port.ToString(CultureInfo.InvariantCulture);

            // The sidecar pair: orders registered (both app ports declared) before the frontend starts, and a policy that
            // allows the frontend's calls (authorization is on, as in production).
            await MeshSetup.AllowFrontendAsync(controlPlane, DataPlaneLoad.PathAndQuery, H2Load.GrpcPath, cancellation);
            var orders = Track(await MeshSetup.StartSidecarAsync("orders-sidecar", "orders", settings.Sidecar, controlPlane, root, sidecarEnvironment, cancellation,
                ["--app-port", appPort, "--app-port", grpcPort, .. settings.SidecarFlags]));
            const string InboundLine = "ztm-sidecar: inbound listening on ";
            var inboundLine = (await orders.WaitForLineAsync(InboundLine, startTimeout)).Line;
            await orders.WaitForLineAsync("registered with the control plane", startTimeout);
            var ordersReady = await orders.WaitForLineAsync("config v1 applied", startTimeout);
            orders.Quiet();
            var frontend = Track(await MeshSetup.StartSidecarAsync("frontend-sidecar", "frontend", settings.Sidecar, controlPlane, root, sidecarEnvironment, cancellation, [.. settings.SidecarFlags]));
            const string OutboundLine = "ztm-sidecar: outbound listening on ";
            var outboundLine = (await frontend.WaitForLineAsync(OutboundLine, startTimeout)).Line;
            var frontendReady = await frontend.WaitForLineAsync("registered with the control plane", startTimeout);
            frontend.Quiet();
            var outbound = IPEndPoint.Parse(outboundLine[(outboundLine.IndexOf(OutboundLine, StringComparison.Ordinal) + OutboundLine.Length)..].Trim());
            var inbound = IPEndPoint.Parse(inboundLine[(inboundLine.IndexOf(InboundLine, StringComparison.Ordinal) + InboundLine.Length)..].Split(' ')[0]);
            var execToRegistered = new Dictionary<LoadProcess, double> { [orders] = ordersReady.MsSinceStart, [frontend] = frontendReady.MsSinceStart };

            // The bare NativeAOT stack (none of our code) idles beside the sidecars as their memory floor: it forwards one
            // request to the app and serves /metrics once, as the sidecars serve their probes, and is never loaded.
            LoadProcess? bare = null;
            if (bareSkipped is null)
            {
                bare = Track(LoadProcess.Start("bare-proxy", settings.BareProxy!, ["--port", "0", "--upstream", appUrl.ToString(), "--grpc", appGrpc.ToString()], environment));
                var bareUrl = ListenerUrl((await bare.WaitForLineAsync("ztm-bare-proxy: listening on http://", startTimeout)).Line);
                var bareClient = NewClient();
                await LoadClients.WaitUntilServingAsync(bareClient, new Uri(bareUrl, DataPlaneLoad.PathAndQuery), DataPlaneLoad.ServiceHost, TimeSpan.FromSeconds(30), "bare-proxy");
                await LoadClients.WaitUntilServingAsync(bareClient, new Uri(bareUrl, "/metrics"), null, TimeSpan.FromSeconds(30), "bare-proxy /metrics");
                bare.Quiet();
            }

            // The new-connection client presents a frontend SVID (the policy allows it) and verifies servers against the bundle.
            using var clientSvid = await MeshSetup.SvidAsync(controlPlane, "frontend", cancellation);
            var newConnections = new NewConnections(clientSvid, TrustBundle.FromPem(SpiffeId.DefaultTrustDomain, File.ReadAllText(Path.Combine(controlPlane.DataDir, "bundle.pem"))));
            var grpcBody = Path.Combine(root, "echo-request.bin");
            await File.WriteAllBytesAsync(grpcBody, H2Load.GrpcEchoBody("hello from h2load"), cancellation);

            var service = DataPlaneLoad.ServiceHost;
            var readyInstances = 0;
            var targets = new List<Target>
            {
                new(DataPlaneReport.Direct, "client → demo app", new Uri(appUrl, DataPlaneLoad.PathAndQuery), service, [], NewClient())
                {
                    H2Url = new Uri(appUrl, DataPlaneLoad.PathAndQuery), H2Authority = service, GrpcUrl = new Uri(appGrpc, H2Load.GrpcPath),
                    ServerSide = new Uri(appUrl, DataPlaneLoad.PathAndQuery),
                },
                new(DataPlaneReport.Ztm, "client → frontend sidecar outbound (Host: orders) → mTLS HTTP/2 → orders sidecar inbound → demo app",
                    new Uri($"http://{outbound}{DataPlaneLoad.PathAndQuery}"), service, [frontend, orders], NewClient())
                {
                    H2Url = new Uri($"http://{outbound}{DataPlaneLoad.PathAndQuery}"), H2Authority = service,
                    GrpcUrl = new Uri($"http://{outbound}{H2Load.GrpcPath}"), GrpcAuthority = $"{service}:{grpcPort}",
                    ServerSide = new Uri($"https://{inbound}{DataPlaneLoad.PathAndQuery}"), ServerProxies = [orders],
                    Startup = async ct =>
                    {
                        var n = ++readyInstances;
                        await using var fresh = await MeshSetup.StartSidecarAsync($"ready-sidecar-{n}", $"ready-{n}", settings.Sidecar, controlPlane, root, sidecarEnvironment, ct, ["--app-port", appPort, .. settings.SidecarFlags]);
                        return ("ztm-sidecar", await MeshSetup.ExecToReadyAsync(fresh, TimeSpan.FromSeconds(30), ct), "/healthz/ready 200 (SVID signed, policy received)");
                    },
                },
            };
            var setup = new PairSetup(controlPlane, appUrl.Port, appGrpc.Port, root, environment, DataPlaneLoad.PathAndQuery, H2Load.GrpcPath);
            foreach (var (name, skipped, start, description) in new (string, string?, Func<Task<ProxyPair>>, string)[]
            {
                (DataPlaneReport.Haproxy, haproxySkipped, () => HaproxyPair.StartAsync(setup, cancellation),
                    "client → haproxy (HTTP in, TLS 1.3 + client SVID out, HTTP/2) → haproxy (verify required, HTTP/1.1 out) → demo app"),
                (DataPlaneReport.Nginx, nginxSkipped, () => NginxPair.StartAsync(setup, cancellation),
                    "client → nginx (HTTP in, TLS 1.3 + client SVID out, HTTP/1.1 keep-alive; gRPC over HTTP/2) → nginx (ssl_verify_client on, HTTP/1.1 out) → demo app"),
                (DataPlaneReport.BarePair, barePairSkipped, () => BareStackPair.StartAsync(setup, settings.BareProxy!, cancellation),
                    "client → ztm-bare-proxy (Kestrel + YARP, HTTP in, TLS 1.3 + client SVID out, HTTP/2) → ztm-bare-proxy (client certificate chained to the CA, HTTP/1.1 out) → demo app: the stack without our code"),
                (DataPlaneReport.FloorPair, floorPairSkipped, () => FloorRelayPair.StartAsync(setup, settings.FloorRelay!, cancellation),
                    "client → ztm-floor-relay (plaintext in, TLS 1.3 + client SVID out, bytes) → ztm-floor-relay (client certificate chained to the CA, bytes out) → demo app: .NET's sockets and TLS, nothing parsed"),
            })
            {
                if (skipped is not null)
                {
                    DataPlaneLoad.Log($"{name} skipped: {skipped}");
                    continue;
                }
                var pair = await start();
                Track(pair.Client);
                Track(pair.Server);
                targets.Add(new Target(name, description, pair.Http1, service, [pair.Client, pair.Server], NewClient())
                {
                    H2Url = pair.H2c, H2Authority = service, GrpcUrl = pair.H2c is null ? null : new Uri(pair.H2c, H2Load.GrpcPath), GrpcAuthority = service,
                    ServerSide = pair.ServerSide, ServerProxies = [pair.Server],
                    Startup = async ct =>
                    {
                        var (fresh, url) = await pair.StartAnotherServerSide(ct);
                        await using (fresh)
                        {
                            return ($"{name.Replace("-pair", "", StringComparison.Ordinal)} server side",
                                await newConnections.FirstSuccessAsync(url, fresh.StartedAt, fresh, TimeSpan.FromSeconds(15), ct), "first mTLS request answered 200");
                        }
                    },
                });
            }

            // The sidecar pair in L4 mode, in its own namespace with capture (root only).
            if (l4Skipped is not null)
            {
                DataPlaneLoad.Log($"{DataPlaneReport.ZtmL4} skipped: {l4Skipped}");
            }
            else
            {
                l4 = await L4SidecarPair.StartAsync(settings, environment, sidecarEnvironment, startTimeout, cancellation);
                var l4Client = l4.Namespace.Client(256);
                clients.Add(l4Client);
                targets.Add(new Target(DataPlaneReport.ZtmL4, L4SidecarPair.Description, l4.Url, service, [l4.Frontend, l4.Orders], l4Client) { Namespace = l4.Namespace });
            }

            // Every entry must serve before anything is measured; a protocol an entry cannot serve is skipped with the reason.
            var skips = new Dictionary<(string Target, string Phase), string>();
            foreach (var target in targets)
            {
                await LoadClients.WaitUntilServingAsync(target.Client, target.Url, target.Host, TimeSpan.FromSeconds(30), target.Name);
                foreach (var (phase, url, authority, body) in new[] { (Http2, target.H2Url, target.H2Authority, (byte[]?)null), (Grpc, target.GrpcUrl, target.GrpcAuthority, await File.ReadAllBytesAsync(grpcBody, cancellation)) })
                {
                    var why = h2loadSkipped ?? (url is null ? "no h2c entry" : await H2Load.ProbeAsync(url, authority, body, cancellation));
                    if (why is not null)
                    {
                        skips[(target.Name, phase)] = why;
                        DataPlaneLoad.Log($"{phase} on {target.Name} skipped: {why}");
                    }
                }
                if (target.ServerSide is null || !await newConnections.OnceAsync(target.ServerSide, cancellation))
                {
                    skips[(target.Name, NewConnection)] = "the server side did not answer 2xx to a new mTLS connection";
                }
                if (target.Name == DataPlaneReport.ZtmL4)
                {
                    skips[(target.Name, Http2)] = skips[(target.Name, Grpc)] = skips[(target.Name, NewConnection)] = L4SidecarPair.NotServed;
                }
            }

            // Idle memory, before any load: read 3 s after the probes, and again once settled. A sidecar hands back what
            // the probes faulted in at its first quiet 5-s check (MemoryTrimmer), at most ~10 s after the last request,
            // as it would in a pod that idles; the settled figure is the one the target is checked against.
            await Task.Delay(TimeSpan.FromSeconds(settings.Quick ? 0.5 : 3), cancellation);
            var afterProbes = IdleMemory(targets, bare, afterProbes: null);
            await Task.Delay(TimeSpan.FromSeconds(settings.Quick ? 0.5 : IdleSettleSeconds - 3), cancellation);
            var idleMemory = IdleMemory(targets, bare, afterProbes);
            var idle = targets.SelectMany(t => t.Proxies).ToDictionary(p => p, p => idleMemory.Single(m => m.Process == p.Name));

            var runs = new List<RunJson>();
            var startupRuns = new List<StartupRunJson>();
            string[] grpcHeaders = ["content-type: application/grpc", "te: trailers"];
            var h2Client = $"h2load -c{settings.H2Clients} -m{settings.H2Streams} (h2c prior knowledge)";
            // --quick has no warm-up round: it only shows the harness works.
            for (var rep = settings.Quick ? 1 : 0; rep <= settings.Repetitions; rep++)
            {
                var warm = rep == 0;
                TimeSpan Time(TimeSpan measured) => warm ? TimeSpan.FromSeconds(Math.Min(3, measured.TotalSeconds)) : measured;
                foreach (var t in targets)
                {
                    runs.Add(await MeasureAsync(rep, Capacity, t, t.Proxies, capacityClient, () => useWrk
                        ? LoadClients.WrkAsync(t.Url, t.Host, settings.Connections, settings.WrkThreads, Time(settings.Capacity), cancellation, t.Namespace)
                        : LoadClients.ClosedLoopAsync(t.Client, t.Url, t.Host, settings.Connections, Time(settings.Capacity), cancellation)));
                }
                foreach (var t in targets.Where(t => !skips.ContainsKey((t.Name, Http2))))
                {
                    runs.Add(await MeasureAsync(rep, Http2, t, t.Proxies, h2Client, () =>
                        H2Load.RunAsync(t.H2Url!, t.H2Authority, null, [], settings.H2Clients, settings.H2Streams, settings.WrkThreads, Time(settings.H2Duration), TimeSpan.Zero, cancellation)));
                }
                foreach (var t in targets.Where(t => !skips.ContainsKey((t.Name, Grpc))))
                {
                    runs.Add(await MeasureAsync(rep, Grpc, t, t.Proxies, h2Client + ", gRPC unary POST", () =>
                        H2Load.RunAsync(t.GrpcUrl!, t.GrpcAuthority, grpcBody, grpcHeaders, settings.H2Clients, settings.H2Streams, settings.WrkThreads, Time(settings.H2Duration), TimeSpan.Zero, cancellation)));
                }
                foreach (var t in targets.Where(t => !skips.ContainsKey((t.Name, NewConnection))))
                {
                    runs.Add(await MeasureAsync(rep, NewConnection, t, t.ServerProxies, $"in-process, {settings.NewConnectionWorkers} loops, one request per connection", () =>
                        newConnections.ClosedLoopAsync(t.ServerSide!, settings.NewConnectionWorkers, Time(settings.NewConnectionDuration), cancellation)));
                }
                foreach (var t in targets)
                {
                    runs.Add(await MeasureAsync(rep, Rate, t, t.Proxies, $"open loop {settings.Rate}/s", () =>
                        LoadClients.FixedRateAsync(t.Client, t.Url, t.Host, settings.Rate, settings.Warmup, Time(settings.RateDuration), cancellation)));
                }
                foreach (var t in targets.Where(t => !warm && t.Startup is not null))
                {
                    var (process, ms, ready) = await t.Startup!(cancellation);
                    startupRuns.Add(new StartupRunJson(rep, t.Name, process, ms, ready));
                    DataPlaneLoad.Log(string.Create(CultureInfo.InvariantCulture, $"rep {rep} exec → ready {t.Name} ({process}): {ms:0} ms"));
                }
            }
            var after = targets.SelectMany(t => t.Proxies).ToDictionary(p => p, p => p.Memory().RssMb);
            var measuredRuns = runs.Where(r => r.Repetition > 0).ToList();

            // Last, so that every phase above ran with no ApiSpec in the mesh.
            var (apiRuns, api) = await ApiProtectionPhase.RunAsync(settings,
                new ApiProtectionPhase.Context(controlPlane, root, sidecarEnvironment, appPort, outbound, frontend, orders, Track, NewClient()),
                startTimeout, cancellation);
            runs.AddRange(apiRuns);
            var summaries = targets.Select(t => DataPlaneSummary.Summarize(t, measuredRuns, idle, after, execToRegistered)).ToList();
            var phases = new[] { Http2, Grpc, NewConnection }.SelectMany(phase => targets.Select(t =>
                DataPlaneSummary.SummarizePhase(phase, t, phase == NewConnection ? t.ServerProxies : t.Proxies, measuredRuns, skips.GetValueOrDefault((t.Name, phase))))).ToList();
            return new MeasuredDataPlane(summaries, phases, DataPlaneSummary.SummarizeStartup(startupRuns), startupRuns, runs, idleMemory, api);
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
            if (l4 is not null)
            {
                await l4.DisposeAsync();
            }
            await controlPlane.StopAsync(TimeSpan.FromSeconds(10));
        }

        LoadProcess Track(LoadProcess process)
        {
            processes.Add(process);
            DataPlaneLoad.Log($"{process.Name} pid {process.Pid}");
            return process;
        }

        HttpClient NewClient()
        {
            var client = LoadClients.Client(256);
            clients.Add(client);
            return client;
        }
    }

    /// <summary>Seconds after the probes at which idle memory counts as settled: two of the sidecar's 5-s trim checks and a margin.</summary>
    public const int IdleSettleSeconds = 12;

    /// <summary>
    /// Every proxy's idle memory split, read in one pass, each against the bare stack's when it runs; with the VmRSS of
    /// an earlier read (<paramref name="afterProbes"/>) beside it.
    /// </summary>
    private static List<IdleMemoryJson> IdleMemory(List<Target> targets, LoadProcess? bare, List<IdleMemoryJson>? afterProbes)
    {
        var processes = targets.SelectMany(t => t.Proxies.Select(p => (t.Name, Process: p))).ToList();
        if (bare is not null)
        {
            processes.Add((DataPlaneReport.Bare, bare));
        }
        var read = processes.Select(x => (x.Name, x.Process, Memory: x.Process.MemorySplit(), Binary: x.Process.BinaryMb())).ToList();
        var floor = bare is null ? (RssMb: double.NaN, RssAnonMb: double.NaN, RssFileMb: double.NaN, RssShmemMb: double.NaN) : read.Single(x => x.Process == bare).Memory;
        return read.Select(x => new IdleMemoryJson(x.Name, x.Process.Name, x.Memory.RssMb,
            afterProbes?.Single(m => m.Process == x.Process.Name).VmRssMb ?? x.Memory.RssMb, x.Memory.RssAnonMb, x.Memory.RssFileMb, x.Memory.RssShmemMb, x.Binary,
            x.Memory.RssMb / floor.RssMb, x.Memory.RssMb - floor.RssMb, x.Memory.RssAnonMb - floor.RssAnonMb, x.Memory.RssFileMb - floor.RssFileMb)).ToList();
    }

    private static Uri ListenerUrl(string line) => new(line[line.IndexOf("http://", StringComparison.Ordinal)..].Trim());

    /// <summary>One run with the given proxies' CPU read around it and their peak RSS reset before it.</summary>
    internal static async Task<RunJson> MeasureAsync(int rep, string phase, Target target, IReadOnlyList<LoadProcess> proxies, string client, Func<Task<ClientResult>> run)
    {
        var load = LoadHost.LoadAverage();
        foreach (var proxy in proxies)
        {
            proxy.ResetPeak();
        }
        var cpu0 = proxies.Select(p => p.CpuTime()).ToArray();
        ClientResult result;
        try
        {
            result = await run();
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            // A load client that fails (h2load printing no summary, wrk overrunning) costs this run, not the whole report.
            DataPlaneLoad.Log($"rep {rep} {phase} {target.Name}: the load client failed, counted as one error: {e.Message}");
            result = new ClientResult(0, 1, 0, 0, double.NaN, double.NaN, double.NaN, double.NaN, 0)
            {
                ErrorsByKind = new Dictionary<string, long> { [$"the load client failed: {ClientResult.KindOf(e)}"] = 1 },
            };
        }
        var processes = proxies.Select((p, i) =>
        {
            var cpu = (p.CpuTime() - cpu0[i]).TotalSeconds;
            return new ProcessRunJson(p.Name, cpu, result.Sent == 0 ? double.NaN : cpu * 1000 / result.Sent, p.Memory().PeakRssMb);
        }).ToList();
        DataPlaneLoad.Log(string.Create(CultureInfo.InvariantCulture,
            $"rep {rep}{(rep == 0 ? " (warm-up)" : "")} {phase} {target.Name}: {result.PerSecond:0}/s errors {result.Errors} p50 {result.P50Ms:0.000} p99 {result.P99Ms:0.000} mean {result.MeanMs:0.000} ms; load {load:0.00}"));
        return new RunJson(rep, phase, target.Name, client, result, processes, load);
    }
}
