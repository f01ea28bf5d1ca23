using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using IdentityClient = ZeroTrustMesh.Proto.V1.Identity.IdentityClient;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// <c>policy-propagation</c>: how fast one policy change reaches N sidecars, and what each connected sidecar costs the
/// control plane in memory.
/// 1. Start the real control plane (Release, port 0, temp data dir) and apply a first policy for namespace <c>bench</c>.
/// 2. Mint K workload SVIDs (<c>spiffe://cluster.local/ns/bench/sa/svc-i</c>) through the real API: an operator-minted
///    join token and one shared CSR (no SAN, one key pair) per identity. The control plane takes the caller's identity
///    from the mTLS client certificate, which belongs to the connection, so each identity gets its own channel and the
///    N simulated sidecars are spread over the K identities (sidecar i is identity i mod K, like replicas sharing a
///    service account); streams of one identity share its HTTP/2 connections.
/// 3. For each N (ascending), open streams up to N: each sends the hello and ACKs every snapshot at once (what the
///    real ConfigWatcher does, without compiling). Read the control plane's RSS when all have ACKed the first snapshot.
/// 4. Apply a change that selects every workload (a selector-less AuthorizationPolicy in <c>bench</c>) and record, per
///    sidecar, the time from the Apply response to the snapshot of the new version; poll PolicyAdmin.Status meanwhile to
///    see when the control plane has the ACKs. <c>--warmup-changes</c> unreported changes, then <c>--changes</c> measured ones.
/// </summary>
internal static class PolicyPropagation
{
    public const double TargetP99Ms = 1000;
    private const string Namespace = "bench";
    private static readonly TimeSpan ChangeTimeout = TimeSpan.FromSeconds(60);

    private sealed record Settings(int[] Sidecars, int Changes, int WarmupChanges, int Identities, TimeSpan StatusInterval, TimeSpan Settle, string ControlPlaneDll, string ResultsDir);

    public static RootCommand Command()
    {
        var sidecars = new Option<string>("--sidecars") { Description = "Comma-separated numbers of simulated sidecars, measured in ascending order in one run", DefaultValueFactory = _ => "1000,5000" };
        var changes = new Option<int>("--changes") { Description = "Measured policy changes per number of sidecars", DefaultValueFactory = _ => 5 };
        var warmupChanges = new Option<int>("--warmup-changes") { Description = "Unreported changes before the measured ones, per number of sidecars (JIT tiering, pools)", DefaultValueFactory = _ => 2 };
        var identities = new Option<int>("--identities") { Description = "Distinct workload SVIDs (each its own channel); 0 = one per sidecar (the largest N)", DefaultValueFactory = _ => 50 };
        var statusInterval = new Option<int>("--status-interval-ms") { Description = "How often PolicyAdmin.Status is polled during a change to see the ACKs (0 = only once all sidecars have the version)", DefaultValueFactory = _ => 100 };
        var settle = CommandLineOptions.Duration("--settle", "Pause after connecting and between changes", "1s");
        var controlPlane = new Option<string?>("--controlplane") { Description = "Path of ztm-controlplane.dll (default: the Release build in this repository)" };
        var results = new Option<string?>("--results") { Description = "Directory for the JSON and markdown results (default: <repo>/results)" };
        var timeout = CommandLineOptions.Duration("--timeout", "Bound on the whole run", "15m");

        var command = new RootCommand("policy-propagation: a policy change to N simulated sidecars (gRPC config streams) against the real control plane")
        {
            sidecars, changes, warmupChanges, identities, statusInterval, settle, controlPlane, results, timeout,
        };
        command.SetAction(async (result, cancellation) =>
        {
            int[] counts;
            try
            {
                counts = [.. result.GetValue(sidecars)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(s => int.Parse(s, CultureInfo.InvariantCulture)).Order()];
            }
            catch (FormatException)
            {
                Console.Error.WriteLine("policy-propagation: --sidecars takes comma-separated numbers, e.g. 1000,5000");
                return CommandLineOptions.UsageError;
            }
            var settings = new Settings(counts, result.GetValue(changes), Math.Max(0, result.GetValue(warmupChanges)), result.GetValue(identities), TimeSpan.FromMilliseconds(Math.Max(0, result.GetValue(statusInterval))), result.GetValue(settle),
                Path.GetFullPath(result.GetValue(controlPlane) ?? Path.Combine(RepoRoot, "control-plane/ZeroTrustMesh.ControlPlane/bin/Release/net10.0/ztm-controlplane.dll")),
                Path.GetFullPath(result.GetValue(results) ?? Path.Combine(RepoRoot, "results")));
            if (counts.Length == 0 || counts[0] < 1 || settings.Changes < 1 || settings.Identities < 0)
            {
                Console.Error.WriteLine("policy-propagation: --sidecars and --changes must be at least 1, --identities at least 0");
                return CommandLineOptions.UsageError;
            }
            if (settings.Identities == 0 || settings.Identities > counts[^1])
            {
                settings = settings with { Identities = counts[^1] };
            }
            if (!File.Exists(settings.ControlPlaneDll))
            {
                Console.Error.WriteLine($"policy-propagation: {settings.ControlPlaneDll} does not exist; build it with 'dotnet build -c Release ZeroTrustMesh.sln' or pass --controlplane");
                return 1;
            }
            using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            bound.CancelAfter(result.GetValue(timeout));
            try
            {
                return await RunAsync(settings, bound.Token);
            }
            catch (OperationCanceledException) when (bound.IsCancellationRequested && !cancellation.IsCancellationRequested)
            {
                Console.Error.WriteLine($"policy-propagation: gave up after --timeout {result.GetValue(timeout)}");
                return 1;
            }
        });
        return command;
    }

    private static string RepoRoot =>
        typeof(PolicyPropagation).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepoRoot").Value!;

    private static async Task<int> RunAsync(Settings settings, CancellationToken cancellation)
    {
        var date = DateTimeOffset.UtcNow;
        Log($"starting {settings.ControlPlaneDll}");
        await using var controlPlane = await ControlPlaneProcess.StartAsync(settings.ControlPlaneDll, TimeSpan.FromSeconds(30), "ztm-propagation-");
        Log($"control plane pid {controlPlane.Pid} at {controlPlane.Address}");
        var bundle = controlPlane.Bundle;
        var time = TimeProvider.System;
        using var operatorCertificate = controlPlane.OperatorCertificate;
        using var adminChannel = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => operatorCertificate, time);
        var admin = new PolicyAdmin.PolicyAdminClient(adminChannel);

        var change = 0;
        var first = await ApplyAsync(admin, change, cancellation);
        var idle = LoadProcess.Memory(controlPlane.Pid);
        Log($"policy {first.Version}; control plane RSS {idle.RssMb:0.0} MiB before any sidecar");

        // 1. K workload SVIDs from the real Identity API: one key pair and one SAN-less CSR, shared by all (allowed: the
        //    identity comes from the join token, not the CSR).
        var mintWatch = Stopwatch.StartNew();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = ByteString.CopyFrom(new CertificateRequest("O=ZeroTrustMesh", key, HashAlgorithmName.SHA256).CreateSigningRequest());
        var certificates = new X509Certificate2[settings.Identities];
        using (var anonymous = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => null, time))
        {
            var identityAdmin = new IdentityAdmin.IdentityAdminClient(adminChannel);
            var identity = new IdentityClient(anonymous);
            await Parallel.ForEachAsync(Enumerable.Range(0, settings.Identities), new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = cancellation }, async (i, ct) =>
            {
                var token = await identityAdmin.CreateJoinTokenAsync(new CreateJoinTokenRequest { Namespace = Namespace, ServiceAccount = $"svc-{i}", TtlSeconds = 3600 }, cancellationToken: ct);
                var signed = await identity.SignCertificateAsync(new SignCertificateRequest { Csr = csr, JoinToken = token.Token }, cancellationToken: ct);
                using var leaf = X509CertificateLoader.LoadCertificate(signed.CertificateChain[0].Span);
                certificates[i] = leaf.CopyWithPrivateKey(key);
            });
        }
        var mintSeconds = mintWatch.Elapsed.TotalSeconds;
        var minted = LoadProcess.Memory(controlPlane.Pid);
        Log($"{settings.Identities} SVIDs in {mintSeconds:0.0}s ({settings.Identities / mintSeconds:0}/s); control plane RSS {minted.RssMb:0.0} MiB");

        var channels = certificates.Select(c => ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => c, time, TimeSpan.FromSeconds(30))).ToArray();
        var tracker = new VersionTracker();
        var sidecars = new List<SimulatedSidecar>();
        using var stopStreams = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var levels = new List<LevelResult>();
        try
        {
            foreach (var n in settings.Sidecars)
            {
                // 2. Streams up to n; at most 200 waiting for their first snapshot at a time, so TLS handshakes and
                //    stream set-up do not all queue at once.
                var connectWatch = Stopwatch.StartNew();
                var current = (await admin.ListAsync(new ListRequest(), cancellationToken: cancellation)).Version;
                using (var opening = new SemaphoreSlim(200))
                {
                    for (var i = sidecars.Count; i < n; i++)
                    {
                        await opening.WaitAsync(cancellation);
                        var sidecar = new SimulatedSidecar(i, new MeshConfig.MeshConfigClient(channels[i % channels.Length]), tracker);
                        sidecars.Add(sidecar);
                        sidecar.Start(stopStreams.Token);
                        _ = sidecar.FirstSnapshot.ContinueWith(_ => opening.Release(), TaskScheduler.Default);
                    }
                    await WaitAsync(tracker.WaitAsync(current, n), ChangeTimeout, $"{n} sidecars with the first snapshot {current}", sidecars, cancellation);
                }
                await WaitForAcksAsync(admin, current, n, TimeSpan.FromMilliseconds(100), cancellation);
                var connectSeconds = connectWatch.Elapsed.TotalSeconds;
                await Task.Delay(settings.Settle, cancellation);
                var connected = LoadProcess.Memory(controlPlane.Pid);
                Log($"{n} sidecars connected and ACKed {current} in {connectSeconds:0.0}s; control plane RSS {connected.RssMb:0.0} MiB ({(connected.RssMb - minted.RssMb) * 1024 / n:0.0} KiB per sidecar over the RSS before any stream)");

                // 3. Changes: warm-up (not reported), then the measured ones.
                var measured = new List<ChangeResult>();
                for (var c = 1 - settings.WarmupChanges; c <= settings.Changes; c++)
                {
                    var result = await ChangeAsync(controlPlane, admin, ++change, n, sidecars, tracker, settings, cancellation);
                    Log(string.Create(CultureInfo.InvariantCulture,
                        $"N={n} change {c}{(c <= 0 ? " (warm-up)" : "")} {result.Version}: received p50 {result.Received.P50:0} p90 {result.Received.P90:0} p99 {result.Received.P99:0} max {result.Received.Max:0} ms; all ACKs in status after {result.AllAckedMs:0} ms; CPU until all received: control plane {result.ServerCpuMs:0} ms, sidecars {result.ClientCpuMs:0} ms"));
                    if (c > 0)
                    {
                        measured.Add(result);
                    }
                    await Task.Delay(settings.Settle, cancellation);
                }
                var after = LoadProcess.Memory(controlPlane.Pid);
                var connections = ConnectionCount(controlPlane.Pid);
                levels.Add(new LevelResult(n, Math.Min(n, settings.Identities), connections, connectSeconds, connected.RssMb, connected.PeakRssMb, after.RssMb, after.PeakRssMb,
                    (connected.RssMb - minted.RssMb) * 1024 / n, measured));
            }

            var failures = sidecars.Count(s => s.Failure is not null);
            var report = new PropagationReport(date, Machine(), settings.Sidecars, settings.Changes, settings.WarmupChanges, settings.Identities, settings.StatusInterval.TotalMilliseconds,
                ConfigDistributorDebounceMs: (int)ControlPlane.Config.ConfigDistributor.Debounce.TotalMilliseconds, idle.RssMb, minted.RssMb, mintSeconds, levels, failures,
                sidecars.Where(s => s.Failure is not null).Select(s => s.Failure!).Distinct().Take(5).ToList(), TargetP99Ms,
                levels.Count > 0 && levels[^1].Sidecars >= 5000 && levels[^1].Changes.All(c => c.Received.P99 <= TargetP99Ms));
            Directory.CreateDirectory(settings.ResultsDir);
            var stem = Path.Combine(settings.ResultsDir, $"policy-propagation-{date:yyyyMMdd-HHmmss}");
            var markdown = report.ToMarkdown();
            await File.WriteAllTextAsync(stem + ".json", report.ToJson(), CancellationToken.None);
            await File.WriteAllTextAsync(stem + ".md", markdown, CancellationToken.None);
            Console.Out.WriteLine(markdown);
            Log($"wrote {stem}.json and {stem}.md");
            return 0;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await Task.Delay(500, CancellationToken.None); // let an exit be noticed
            Log($"failed: {e.Message}; the control plane {(controlPlane.ExitCode is { } code ? $"exited with code {code}" : "is still running")}; its last output:\n{controlPlane.Output}");
            throw;
        }
        finally
        {
            await stopStreams.CancelAsync();
            await Task.WhenAny(Task.WhenAll(sidecars.Select(s => s.Completion)), Task.Delay(TimeSpan.FromSeconds(10), CancellationToken.None));
            foreach (var channel in channels)
            {
                channel.Dispose();
            }
            foreach (var certificate in certificates)
            {
                certificate?.Dispose();
            }
            await controlPlane.StopAsync(TimeSpan.FromSeconds(10));
        }
    }

    private static void Log(string message) => Console.Error.WriteLine($"policy-propagation: {message}");

    /// <summary>
    /// One change: Apply, then per sidecar the time from the Apply response to the new version's snapshot; meanwhile
    /// Status is polled to see how many sidecars the control plane knows to have ACKed it.
    /// </summary>
    private static async Task<ChangeResult> ChangeAsync(ControlPlaneProcess controlPlane, PolicyAdmin.PolicyAdminClient admin, int change, int n, List<SimulatedSidecar> sidecars,
        VersionTracker tracker, Settings settings, CancellationToken cancellation)
    {
        var serverCpu0 = controlPlane.CpuTime;
        var clientCpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var sent = Stopwatch.GetTimestamp();
        var response = await ApplyAsync(admin, change, cancellation);
        var answered = Stopwatch.GetTimestamp();
        var version = response.Version;
        var all = tracker.WaitAsync(version, n);

        // ACKs as the control plane sees them: (time since the Apply response, sidecars with version_applied == version).
        var acks = new List<(double Ms, int Count)>();
        if (settings.StatusInterval > TimeSpan.Zero)
        {
            while (!all.IsCompleted)
            {
                await Task.WhenAny(all, Task.Delay(settings.StatusInterval, cancellation));
                if (all.IsCompleted)
                {
                    break;
                }
                acks.Add((Ms(Stopwatch.GetTimestamp() - answered), await AckedAsync(admin, version, cancellation)));
                if (Stopwatch.GetElapsedTime(answered) > ChangeTimeout)
                {
                    break;
                }
            }
        }
        await WaitAsync(all, ChangeTimeout, $"{n} sidecars with {version}", sidecars, cancellation);
        var serverCpu = controlPlane.CpuTime - serverCpu0;
        var clientCpu = Process.GetCurrentProcess().TotalProcessorTime - clientCpu0;
        var received = sidecars.Take(n).Select(s => Ms(s.ReceivedAt(version) - answered)).Order().ToArray();
        while (acks.Count == 0 || acks[^1].Count < n)
        {
            acks.Add((Ms(Stopwatch.GetTimestamp() - answered), await AckedAsync(admin, version, cancellation)));
            if (acks[^1].Count < n)
            {
                if (Stopwatch.GetElapsedTime(answered) > ChangeTimeout)
                {
                    throw new TimeoutException($"the control plane saw only {acks[^1].Count} of {n} ACKs of {version} after {ChangeTimeout.TotalSeconds}s");
                }
                await Task.Delay(TimeSpan.FromMilliseconds(20), cancellation);
            }
        }
        double AckedBy(double q) => acks.First(a => a.Count >= Math.Ceiling(q * n)).Ms;
        return new ChangeResult(version, Ms(answered - sent), Summary.Of(received), AckedBy(0.5), AckedBy(0.99), AckedBy(1.0), acks.Count,
            serverCpu.TotalMilliseconds, clientCpu.TotalMilliseconds);
    }

    private static async Task<int> AckedAsync(PolicyAdmin.PolicyAdminClient admin, string version, CancellationToken cancellation)
    {
        var status = await admin.StatusAsync(new StatusRequest(), cancellationToken: cancellation);
        return status.Sidecars.Count(s => s.Connected && s.VersionApplied == version);
    }

    private static async Task WaitForAcksAsync(PolicyAdmin.PolicyAdminClient admin, string version, int n, TimeSpan interval, CancellationToken cancellation)
    {
        var start = Stopwatch.GetTimestamp();
        while (await AckedAsync(admin, version, cancellation) < n)
        {
            if (Stopwatch.GetElapsedTime(start) > ChangeTimeout)
            {
                throw new TimeoutException($"the control plane did not see {n} ACKs of {version} within {ChangeTimeout.TotalSeconds}s");
            }
            await Task.Delay(interval, cancellation);
        }
    }

    private static async Task WaitAsync(Task task, TimeSpan timeout, string what, List<SimulatedSidecar> sidecars, CancellationToken cancellation)
    {
        if (await Task.WhenAny(task, Task.Delay(timeout, cancellation)) != task)
        {
            cancellation.ThrowIfCancellationRequested();
            var failed = sidecars.Where(s => s.Failure is not null).ToList();
            throw new TimeoutException($"no {what} within {timeout.TotalSeconds}s; {failed.Count} stream(s) failed{(failed.Count > 0 ? ", e.g. " + failed[0].Failure : "")}");
        }
    }

    /// <summary>A selector-less ALLOW in namespace bench (so it selects every simulated workload) whose path changes each time.</summary>
    private static Task<ApplyResponse> ApplyAsync(PolicyAdmin.PolicyAdminClient admin, int change, CancellationToken cancellation) =>
        admin.ApplyAsync(new ApplyRequest
        {
            Source = "policy-propagation.yaml",
            Yaml = $$"""
                apiVersion: security.ztm.dev/v1
                kind: AuthorizationPolicy
                metadata:
                  name: bench-allow
                  namespace: {{Namespace}}
                spec:
                  action: ALLOW
                  rules:
                    - from:
                        - source:
                            namespaces: ["{{Namespace}}"]
                      to:
                        - operation:
                            methods: ["GET"]
                            paths: ["/change-{{change}}/*"]
                """,
        }, cancellationToken: cancellation).ResponseAsync;

    private static double Ms(long stopwatchTicks) => stopwatchTicks * 1000.0 / Stopwatch.Frequency;

    /// <summary>TCP connections the control plane holds (socket fds of its PID), to show how the streams were multiplexed.</summary>
    private static int ConnectionCount(int pid)
    {
        try
        {
            return new DirectoryInfo($"/proc/{pid}/fd").EnumerateFileSystemInfos()
                .Count(f => f.LinkTarget?.StartsWith("socket:", StringComparison.Ordinal) == true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return -1;
        }
    }

    private static PropagationMachine Machine()
    {
        var cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        var load = File.ReadAllText("/proc/loadavg").Split(' ')[0];
        return new PropagationMachine(Environment.ProcessorCount, cpu, File.ReadAllText("/proc/sys/kernel/osrelease").Trim(), Environment.Version.ToString(), load);
    }

    /// <summary>A simulated sidecar: hello, then ACK every snapshot at once; remembers when each version arrived.</summary>
    private sealed class SimulatedSidecar(int index, MeshConfig.MeshConfigClient client, VersionTracker tracker)
    {
        private readonly ConcurrentDictionary<string, long> _received = new();
        private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Index { get; } = index;

        public Task FirstSnapshot => _first.Task;

        public Task Completion { get; private set; } = Task.CompletedTask;

        public string? Failure { get; private set; }

        public long ReceivedAt(string version) => _received[version];

        public void Start(CancellationToken cancellation) => Completion = Task.Run(() => RunAsync(cancellation), CancellationToken.None);

        private async Task RunAsync(CancellationToken cancellation)
        {
            try
            {
                using var call = client.Stream(cancellationToken: cancellation);
                await call.RequestStream.WriteAsync(new ConfigRequest { VersionApplied = "" }, cancellation);
                while (await call.ResponseStream.MoveNext(cancellation))
                {
                    var snapshot = call.ResponseStream.Current;
                    var now = Stopwatch.GetTimestamp();
                    if (_received.TryAdd(snapshot.Version, now))
                    {
                        tracker.Received(snapshot.Version);
                    }
                    await call.RequestStream.WriteAsync(new ConfigRequest { VersionApplied = snapshot.Version, ResponseNonce = snapshot.Nonce }, cancellation);
                    _first.TrySetResult();
                }
                Failure = "stream ended by the server";
            }
            catch (Exception) when (cancellation.IsCancellationRequested)
            {
                // the run is over
            }
            catch (Exception e) when (e is RpcException or IOException or InvalidOperationException)
            {
                Failure = e is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message;
            }
            finally
            {
                _first.TrySetResult(); // let the opener go on; the failure is counted
            }
        }
    }

    /// <summary>How many sidecars have received each version; a waiter is released when the count reaches its target.</summary>
    private sealed class VersionTracker
    {
        private readonly ConcurrentDictionary<string, Counter> _counters = new();

        public void Received(string version) => _counters.GetOrAdd(version, _ => new Counter()).Increment();

        public Task WaitAsync(string version, int target) => _counters.GetOrAdd(version, _ => new Counter()).WaitFor(target);

        private sealed class Counter
        {
            private readonly Lock _gate = new();
            private readonly List<(int Target, TaskCompletionSource Reached)> _waiters = [];
            private int _count;

            public void Increment()
            {
                lock (_gate)
                {
                    _count++;
                    foreach (var waiter in _waiters.Where(w => _count >= w.Target))
                    {
                        waiter.Reached.TrySetResult();
                    }
                    _waiters.RemoveAll(w => w.Reached.Task.IsCompleted);
                }
            }

            public Task WaitFor(int target)
            {
                lock (_gate)
                {
                    if (_count >= target)
                    {
                        return Task.CompletedTask;
                    }
                    var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    _waiters.Add((target, reached));
                    return reached.Task;
                }
            }
        }
    }
}
