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
using TrustBundle = ZeroTrustMesh.Identity.TrustBundle;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// <c>signing-load</c>: signed SVIDs per second from the real control plane over gRPC, side by side with
/// two baselines measured in the same run on the same connections:
/// <list type="number">
/// <item><c>baseline-empty-csr</c>: SignCertificate with an empty CSR, refused at once (InvalidArgument, one log line): a plain gRPC round trip, no crypto.</item>
/// <item><c>renew-invalid-csr</c>: RenewCertificate with an empty CSR: mTLS caller verification (chain build), then refused.</item>
/// <item><c>renew-sign</c>: RenewCertificate with a valid, pre-generated CSR: verification + CSR check + signing.</item>
/// </list>
/// Each phase: fixed concurrency, warm-up, then a fixed measured window. The control plane is started as a process
/// (Release build, port 0, temp data directory) and stopped by its PID at the end.
/// </summary>
internal static class SigningLoad
{
    public const double TargetPerSecond = 3000;
    private static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(10);

    private sealed record Settings(TimeSpan Duration, TimeSpan Warmup, int Concurrency, int Channels, int Csrs, int Rounds, string ControlPlaneDll, string ResultsDir);

    public static RootCommand Command()
    {
        var duration = CommandLineOptions.Duration("--duration", "Measured time per phase", "10s");
        var warmup = CommandLineOptions.Duration("--warmup", "Warm-up per phase, not measured", "3s");
        var concurrency = new Option<int>("--concurrency") { Description = "Calls in flight", DefaultValueFactory = _ => 16 };
        var channels = new Option<int>("--channels") { Description = "gRPC channels (each its own HTTP/2 connection pool) the calls are spread over", DefaultValueFactory = _ => 1 };
        var csrs = new Option<int>("--csrs") { Description = "Pre-generated CSRs cycled through", DefaultValueFactory = _ => 256 };
        var rounds = new Option<int>("--rounds") { Description = "Times the three phases are repeated", DefaultValueFactory = _ => 1 };
        var controlPlane = new Option<string?>("--controlplane") { Description = "Path of ztm-controlplane.dll (default: the Release build in this repository)" };
        var results = new Option<string?>("--results") { Description = "Directory for the JSON and markdown results (default: <repo>/results)" };

        var command = new RootCommand("signing-load: signed SVIDs per second against the real control plane, with a plain gRPC baseline in the same run")
        {
            duration, warmup, concurrency, channels, csrs, rounds, controlPlane, results,
        };
        command.SetAction(async (result, cancellation) =>
        {
            var settings = new Settings(result.GetValue(duration), result.GetValue(warmup), result.GetValue(concurrency), result.GetValue(channels),
                result.GetValue(csrs), result.GetValue(rounds),
                Path.GetFullPath(result.GetValue(controlPlane) ?? Path.Combine(RepoRoot, "control-plane/ZeroTrustMesh.ControlPlane/bin/Release/net10.0/ztm-controlplane.dll")),
                Path.GetFullPath(result.GetValue(results) ?? Path.Combine(RepoRoot, "results")));
            if (settings.Concurrency < 1 || settings.Channels < 1 || settings.Csrs < 1 || settings.Rounds < 1)
            {
                Console.Error.WriteLine("signing-load: --concurrency, --channels, --csrs and --rounds must be at least 1");
                return CommandLineOptions.UsageError;
            }
            if (!File.Exists(settings.ControlPlaneDll))
            {
                Console.Error.WriteLine($"signing-load: {settings.ControlPlaneDll} does not exist; build it with 'dotnet build -c Release ZeroTrustMesh.sln' or pass --controlplane");
                return 1;
            }
            // The whole run is bounded: phases plus generous start-up and shutdown time.
            var bound = (settings.Duration + settings.Warmup) * 3 * (settings.Rounds + 1) + TimeSpan.FromSeconds(90);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            timeout.CancelAfter(bound);
            return await RunAsync(settings, timeout.Token);
        });
        return command;
    }

    private static string RepoRoot =>
        typeof(SigningLoad).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepoRoot").Value!;

    private static async Task<int> RunAsync(Settings settings, CancellationToken cancellation)
    {
        var date = DateTimeOffset.UtcNow;
        Console.Error.WriteLine($"signing-load: starting {settings.ControlPlaneDll}");
        await using var controlPlane = await ControlPlaneProcess.StartAsync(settings.ControlPlaneDll, TimeSpan.FromSeconds(30));
        Console.Error.WriteLine($"signing-load: control plane pid {controlPlane.Pid} at {controlPlane.Address}");
        var bundle = controlPlane.Bundle;
        var time = TimeProvider.System;

        // 1. An operator-minted join token, and a first workload SVID signed with it (as a sidecar does).
        string token;
        SpiffeId id;
        using (var operatorCertificate = controlPlane.OperatorCertificate)
        using (var admin = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => operatorCertificate, time))
        {
            var created = await new IdentityAdmin.IdentityAdminClient(admin).CreateJoinTokenAsync(
                new CreateJoinTokenRequest { Namespace = "bench", ServiceAccount = "signing-load", TtlSeconds = 300 }, cancellationToken: cancellation);
            token = created.Token;
            id = SpiffeId.Parse(created.SpiffeId);
        }
        using var workloadKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        X509Certificate2 workload;
        using (var anonymous = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => null, time))
        {
            var signed = await new IdentityClient(anonymous).SignCertificateAsync(
                new SignCertificateRequest { Csr = ByteString.CopyFrom(Csr(workloadKey, id)), JoinToken = token }, cancellationToken: cancellation);
            using var leaf = X509CertificateLoader.LoadCertificate(signed.CertificateChain[0].Span);
            workload = leaf.CopyWithPrivateKey(workloadKey);
        }
        using var _ = workload;

        // 2. CSRs for the same identity, made before the run so no client CPU goes to key generation during it.
        var csrs = Enumerable.Range(0, settings.Csrs).Select(_ =>
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            return ByteString.CopyFrom(Csr(key, id));
        }).ToArray();

        // 3. The channels every phase uses: mTLS with the workload SVID, as a renewing sidecar connects.
        var channels = Enumerable.Range(0, settings.Channels)
            .Select(_ => ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => workload, time)).ToArray();
        try
        {
            var clients = channels.Select(c => new IdentityClient(c)).ToArray();
            var check = await clients[0].RenewCertificateAsync(new RenewCertificateRequest { Csr = csrs[0] }, cancellationToken: cancellation);
            using (var renewed = X509CertificateLoader.LoadCertificate(check.CertificateChain[0].Span))
            {
                var verified = SvidVerifier.Verify(renewed, [], bundle, time.GetUtcNow());
                if (!verified.IsValid || verified.Id != id)
                {
                    throw new InvalidOperationException($"the renewed certificate is not a valid SVID for {id}: {verified.Reason ?? verified.Id.ToString()}");
                }
            }

            // Round 0, not reported: every call kind once through a warm-up, so round 1 does not pay for JIT tiering.
            var phases = new List<PhaseResult>();
            for (var round = 0; round <= settings.Rounds; round++)
            {
                var phaseSettings = round == 0 ? settings with { Duration = settings.Warmup } : settings;
                var measured = new List<PhaseResult>();
                measured.Add(await RunPhaseAsync(round, LoadReport.BaselinePhase, "SignCertificate with an empty CSR: refused before any crypto (plain gRPC round trip)",
                    phaseSettings, controlPlane, clients, (client, _, ct) => SignEmptyAsync(client, ct), cancellation));
                measured.Add(await RunPhaseAsync(round, LoadReport.AuthPhase, "RenewCertificate with an empty CSR: caller SVID verified, then InvalidArgument",
                    phaseSettings, controlPlane, clients, (client, _, ct) => RenewInvalidAsync(client, ct), cancellation));
                measured.Add(await RunPhaseAsync(round, LoadReport.SignPhase, "RenewCertificate with a valid CSR: verify caller + validate CSR + sign",
                    phaseSettings, controlPlane, clients, (client, n, ct) => RenewAsync(client, csrs[n % csrs.Length], id, ct), cancellation));
                if (round > 0)
                {
                    phases.AddRange(measured);
                }
            }

            var report = LoadReport.Create(date,
                new LoadSettingsJson(settings.Duration.TotalSeconds, settings.Warmup.TotalSeconds, settings.Concurrency, settings.Channels, settings.Csrs, settings.Rounds, settings.ControlPlaneDll),
                phases, TargetPerSecond);
            Directory.CreateDirectory(settings.ResultsDir);
            var stem = Path.Combine(settings.ResultsDir, $"signing-load-{date:yyyyMMdd-HHmmss}-c{settings.Concurrency}");
            var markdown = report.ToMarkdown();
            await File.WriteAllTextAsync(stem + ".json", report.ToJson(), CancellationToken.None);
            await File.WriteAllTextAsync(stem + ".md", markdown, CancellationToken.None);
            Console.Out.WriteLine(markdown);
            Console.Error.WriteLine($"signing-load: wrote {stem}.json and {stem}.md");
            return 0;
        }
        finally
        {
            foreach (var channel in channels)
            {
                channel.Dispose();
            }
            await controlPlane.StopAsync(TimeSpan.FromSeconds(10));
        }
    }

    private static byte[] Csr(ECDsa key, SpiffeId id)
    {
        var request = new CertificateRequest("O=ZeroTrustMesh", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(SubjectAltNames.ForUri(id.Value)); // as the sidecar's rotator sends it
        return request.CreateSigningRequest();
    }

    private static async Task<string?> SignEmptyAsync(IdentityClient client, CancellationToken cancellation)
    {
        try
        {
            await client.SignCertificateAsync(new SignCertificateRequest { Csr = ByteString.Empty }, deadline: DateTime.UtcNow + CallDeadline, cancellationToken: cancellation);
            return "unexpected success";
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            return null; // the CSR is checked first: refused before any proof, caller or signature work
        }
    }

    private static async Task<string?> RenewInvalidAsync(IdentityClient client, CancellationToken cancellation)
    {
        try
        {
            await client.RenewCertificateAsync(new RenewCertificateRequest { Csr = ByteString.Empty }, deadline: DateTime.UtcNow + CallDeadline, cancellationToken: cancellation);
            return "unexpected success";
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            return null; // the expected, fast refusal
        }
    }

    private static async Task<string?> RenewAsync(IdentityClient client, ByteString csr, SpiffeId id, CancellationToken cancellation)
    {
        var response = await client.RenewCertificateAsync(new RenewCertificateRequest { Csr = csr }, deadline: DateTime.UtcNow + CallDeadline, cancellationToken: cancellation);
        return response.CertificateChain.Count > 0 && response.SpiffeId == id.Value ? null : "no certificate for the identity";
    }

    /// <summary>
    /// Runs <paramref name="call"/> with fixed concurrency through warm-up and the measured window. A call counts
    /// if it started and completed inside the window; CPU of both processes is read at the window's edges.
    /// </summary>
    private static async Task<PhaseResult> RunPhaseAsync(int round, string phase, string description, Settings settings, ControlPlaneProcess controlPlane,
        IdentityClient[] clients, Func<IdentityClient, int, CancellationToken, Task<string?>> call, CancellationToken cancellation)
    {
        Console.Error.WriteLine($"signing-load: round {round} {phase}: warm-up {settings.Warmup.TotalSeconds}s, measure {settings.Duration.TotalSeconds}s");
        var window = new Window();
        var workers = Enumerable.Range(0, settings.Concurrency)
            .Select(w => Task.Run(() => WorkerAsync(w, clients[w % clients.Length], settings.Concurrency, call, window, cancellation), cancellation))
            .ToArray();

        await Task.Delay(settings.Warmup, cancellation);
        var serverCpu0 = controlPlane.CpuTime;
        var clientCpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var issued0 = controlPlane.IssuedLines;
        window.Open();
        await Task.Delay(settings.Duration, cancellation);
        window.Close();
        var serverCpu1 = controlPlane.CpuTime;
        var clientCpu1 = Process.GetCurrentProcess().TotalProcessorTime;
        var issued1 = controlPlane.IssuedLines;
        window.Stop();
        var outcomes = await Task.WhenAll(workers);

        var seconds = Stopwatch.GetElapsedTime(window.Start, window.End).TotalSeconds;
        var latencies = outcomes.SelectMany(o => o.Latencies).Order().ToArray();
        var errors = outcomes.SelectMany(o => o.Errors).GroupBy(e => e.Key).ToDictionary(g => g.Key, g => g.Sum(e => e.Value));
        var completed = latencies.LongLength;
        double Percentile(double q) => completed == 0 ? double.NaN : Ms(latencies[Math.Max(0, (int)Math.Ceiling(q * completed) - 1)]);
        double PerCall(TimeSpan cpu) => completed == 0 ? double.NaN : cpu.TotalMicroseconds / completed;
        var result = new PhaseResult(round, phase, description, completed, errors.Values.Sum(), errors, seconds, completed / seconds,
            completed == 0 ? double.NaN : Ms((long)latencies.Average()), Percentile(0.50), Percentile(0.99),
            PerCall(serverCpu1 - serverCpu0), PerCall(clientCpu1 - clientCpu0),
            (serverCpu1 - serverCpu0).TotalSeconds / seconds, (clientCpu1 - clientCpu0).TotalSeconds / seconds, issued1 - issued0);
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"signing-load: round {round} {phase}: {result.PerSecond:0}/s p50 {result.P50Ms:0.00} ms p99 {result.P99Ms:0.00} ms errors {result.Errors} server CPU {result.ServerCpuMicrosPerCall:0} µs/call"));
        return result;
    }

    private static double Ms(long stopwatchTicks) => stopwatchTicks * 1000.0 / Stopwatch.Frequency;

    private sealed record WorkerOutcome(List<long> Latencies, Dictionary<string, long> Errors);

    private static async Task<WorkerOutcome> WorkerAsync(int worker, IdentityClient client, int stride,
        Func<IdentityClient, int, CancellationToken, Task<string?>> call, Window window, CancellationToken cancellation)
    {
        var latencies = new List<long>(1 << 14);
        var errors = new Dictionary<string, long>();
        var n = worker;
        while (!window.Stopped)
        {
            cancellation.ThrowIfCancellationRequested();
            var start = Stopwatch.GetTimestamp();
            string? error;
            try
            {
                error = await call(client, n, cancellation);
            }
            catch (RpcException e)
            {
                error = e.StatusCode.ToString();
            }
            var end = Stopwatch.GetTimestamp();
            n += stride;
            if (!window.Contains(start, end))
            {
                continue;
            }
            if (error is null)
            {
                latencies.Add(end - start);
            }
            else
            {
                errors[error] = errors.GetValueOrDefault(error) + 1;
            }
        }
        return new WorkerOutcome(latencies, errors);
    }

    /// <summary>The measured window, opened and closed by the coordinator and read by every worker.</summary>
    private sealed class Window
    {
        private long _start = long.MaxValue;
        private long _end = long.MaxValue;
        private volatile bool _stopped;

        public long Start => Volatile.Read(ref _start);

        public long End => Volatile.Read(ref _end);

        public bool Stopped => _stopped;

        public void Open() => Volatile.Write(ref _start, Stopwatch.GetTimestamp());

        public void Close() => Volatile.Write(ref _end, Stopwatch.GetTimestamp());

        public void Stop() => _stopped = true;

        public bool Contains(long start, long end) => start >= Start && end <= End;
    }
}
