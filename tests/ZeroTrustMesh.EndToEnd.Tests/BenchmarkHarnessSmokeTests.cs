using System.Diagnostics;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// The data-plane load harness (<c>benchmarks/run</c>, <c>dataplane-load</c>) in its <c>--quick</c> mode, so it cannot rot:
/// it must start the control plane, the demo app and the sidecar pair (this build's sidecar, not NativeAOT), drive
/// every target in every section (HTTP/1.1, HTTP/2, gRPC, new connections, latency, exec → ready, idle memory, the
/// sidecar against the bare-stack pair, API protection through an ApiSpec, the control plane with 50 simulated sidecars), the direct baseline, the
/// sidecar pair and the bare-stack pair without errors, every error
/// reported with its kind, and write both reports. No root needed: without wrk it uses its in-process
/// client, without haproxy or nginx it skips only that pair, and without h2load the HTTP/2 and gRPC rows, each saying so
/// in the report. The figures are not checked.
/// </summary>
public sealed class BenchmarkHarnessSmokeTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(5); // the API protection phase starts a third sidecar and adds five runs

    [Fact]
    public async Task Quick_dataplane_load_drives_every_target_and_writes_both_reports()
    {
        var results = Directory.CreateTempSubdirectory("ztm-dataplane-smoke-").FullName;
        try
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var arg in new[] { Executables.Benchmarks, "dataplane-load", "--quick", "--results", results,
                "--controlplane", Executables.ControlPlane, "--sidecar", Executables.Sidecar, "--demo-app", Executables.DemoApp, "--bare-proxy", Executables.BareProxy,
                "--floor-relay", Executables.FloorRelay })
            {
                start.ArgumentList.Add(arg);
            }
            start.Environment["DOTNET_NOLOGO"] = "1";
            using var harness = Process.Start(start)!;
            var stdout = harness.StandardOutput.ReadToEndAsync();
            var stderr = harness.StandardError.ReadToEndAsync();
            using (var timeout = new CancellationTokenSource(Bound))
            {
                try
                {
                    await harness.WaitForExitAsync(timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    harness.Kill(entireProcessTree: true);
                    throw new TimeoutException($"dataplane-load --quick did not finish within {Bound.TotalMinutes} minutes:\n{await stderr}");
                }
            }
            output.WriteLine(await stderr);
            output.WriteLine(await stdout);
            Assert.True(harness.ExitCode == 0, $"dataplane-load --quick exited with {harness.ExitCode}:\n{await stderr}");

            var dir = Assert.Single(Directory.GetDirectories(results));
            Assert.True(File.Exists(Path.Combine(dir, "report.md")));
            using var report = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(dir, "report.json")));
            var targets = report.RootElement.GetProperty("targets").EnumerateArray().ToDictionary(t => t.GetProperty("target").GetString()!);
            var settings = report.RootElement.GetProperty("settings");
            var markdown = await stdout;
            var expected = new List<string> { "direct", "ztm-sidecar-pair" };
            foreach (var (pair, property, skippedLine) in new[] { ("haproxy-pair", "haproxySkipped", "HAProxy pair skipped"), ("nginx-pair", "nginxSkipped", "nginx pair skipped") })
            {
                var skipped = settings.GetProperty(property);
                if (skipped.ValueKind == JsonValueKind.Null)
                {
                    expected.Add(pair);
                }
                else
                {
                    Assert.Contains(skippedLine, markdown, StringComparison.Ordinal);
                    output.WriteLine($"{pair} skipped by the harness: {skipped.GetString()}");
                }
            }
            expected.Add("bare-stack-pair"); // the test's (JIT) ztm-bare-proxy runs as the pair; only its idle-memory row needs AOT
            expected.Add("floor-relay-pair"); // JIT here too: the harness runs it, benchmarks/run measures the NativeAOT build
            Assert.Equal(expected, targets.Keys.ToArray());
            foreach (var section in new[] { "## HTTP/2 capacity", "## The sidecar pair against its own stack", "## The sidecar pair against the runtime's floor", "## gRPC unary capacity", "## New-connection cost", "## exec → ready", "## Idle memory", "## Control plane", "## API protection (ApiSpec)" })
            {
                Assert.Contains(section, markdown, StringComparison.Ordinal);
            }

            // HTTP/2, gRPC and new connections: a row per target and phase, measured without errors or skipped with a reason;
            // with h2load installed the sidecar pair must serve HTTP/2 and gRPC, and its inbound side must take new mTLS connections.
            var h2load = settings.GetProperty("h2loadSkipped").ValueKind == JsonValueKind.Null;
            var phases = report.RootElement.GetProperty("phases").EnumerateArray().ToList();
            foreach (var phase in new[] { "h2", "grpc", "newconn" })
            {
                foreach (var name in expected)
                {
                    var row = Assert.Single(phases, p => p.GetProperty("phase").GetString() == phase && p.GetProperty("target").GetString() == name);
                    var skipped = row.GetProperty("skipped");
                    if (skipped.ValueKind != JsonValueKind.Null)
                    {
                        Assert.False(name == "ztm-sidecar-pair" && (h2load || phase == "newconn"), $"{phase} on the sidecar pair was skipped: {skipped.GetString()}");
                        output.WriteLine($"{phase} on {name} skipped: {skipped.GetString()}");
                        continue;
                    }
                    Assert.True(row.GetProperty("perSecond").GetProperty("median").GetDouble() > 0, $"{phase} {name}: nothing measured");
                    AssertNoErrorsFromOurs(name, $"{phase} {name}", row.GetProperty("errors"));
                }
            }

            // Every run with errors says what they were, and the kinds add up to the count.
            foreach (var run in report.RootElement.GetProperty("runs").EnumerateArray())
            {
                var result = run.GetProperty("result");
                var kinds = result.GetProperty("errorsByKind").EnumerateObject().ToList();
                Assert.Equal(result.GetProperty("errors").GetInt64(), kinds.Sum(k => k.Value.GetInt64()));
                foreach (var kind in kinds)
                {
                    output.WriteLine($"{run.GetProperty("phase").GetString()} {run.GetProperty("target").GetString()}: {kind.Name} ×{kind.Value.GetInt64()}");
                    Assert.Contains($"{kind.Name} ×{kind.Value.GetInt64()}", markdown, StringComparison.Ordinal);
                }
            }
            var startup = report.RootElement.GetProperty("startup").EnumerateArray().ToList();
            Assert.Contains(startup, s => s.GetProperty("target").GetString() == "ztm-sidecar-pair" && s.GetProperty("execToReadyMs").GetProperty("median").GetDouble() > 0);
            Assert.Equal(expected.Count - 1, startup.Count);

            // The sidecar pair against the bare-stack pair and the runtime's floor, phase by phase: a ratio and both pairs' CPU per request.
            foreach (var (property, what) in new[] { ("stackFloor", "bare-stack"), ("runtimeFloor", "floor-relay") })
            {
                var floor = report.RootElement.GetProperty(property).EnumerateArray().ToDictionary(f => f.GetProperty("phase").GetString()!);
                foreach (var phase in new[] { "capacity", "rate", "newconn" })
                {
                    Assert.True(floor.TryGetValue(phase, out var row), $"no sidecar-vs-{what} row for {phase}");
                    Assert.True(row.GetProperty("sidecarVsFloor").GetProperty("median").GetDouble() > 0, $"{phase}: no sidecar ÷ {what} ratio");
                    Assert.True(row.GetProperty("floorPairCpu").GetProperty("median").GetDouble() > 0, $"{phase}: no {what} pair CPU");
                    Assert.True(row.GetProperty("cpuVsFloor").GetProperty("median").GetDouble() > 0, $"{phase}: no sidecar ÷ {what} CPU ratio");
                }
            }
            // Issue 20's targets are checked in every report (met or not: a smoke run's figures mean nothing).
            var checks = report.RootElement.GetProperty("checks").EnumerateArray().Select(c => c.GetProperty("goal").GetString()!).ToList();
            Assert.Contains("sidecar pair HTTP/1.1 capacity ≥ 0.90× the floor-relay pair", checks);
            Assert.Contains("sidecar pair CPU per request at capacity ≤ 1.1× the floor-relay pair's", checks);

            // API protection (issue 18): validation and redaction were checked in force before the phase measured, every
            // run of it served without errors, and its three targets are in the checks.
            var api = report.RootElement.GetProperty("apiProtection");
            Assert.Equal(4096, api.GetProperty("bodyBytes").GetInt32());
            Assert.True(api.GetProperty("redactedResponseBytes").GetInt32() < api.GetProperty("responseBytes").GetInt32(), "the 64 KiB page was not redacted");
            foreach (var figure in new[] { "validationAddedP99Ms", "redactionAddedP50Ms", "noApiSpecAddedP99Ms", "noApiSpecAbsentP99Ms", "armsApartP99Ms", "validationNetP99Ms" })
            {
                Assert.Equal(1, api.GetProperty(figure).GetProperty("n").GetInt32());
            }
            var apiRuns = report.RootElement.GetProperty("runs").EnumerateArray().Where(r => r.GetProperty("phase").GetString() == "api").ToList();
            Assert.Equal(["apispec-none-post", "apispec-validate-post", "apispec-none-json", "apispec-redact-json", "apispec-none-bytes", "apispec-absent-bytes", "apispec-absent-post-orders", "apispec-absent-post-catalog"],
                apiRuns.Select(r => r.GetProperty("target").GetString()));
            foreach (var run in apiRuns)
            {
                Assert.True(run.GetProperty("result").GetProperty("errors").GetInt64() == 0, $"api {run.GetProperty("target").GetString()}: errors");
                Assert.True(run.GetProperty("result").GetProperty("requests").GetInt64() > 0, $"api {run.GetProperty("target").GetString()}: nothing measured");
            }
            Assert.Equal(3, checks.Count(c => c.StartsWith("ApiSpec ", StringComparison.Ordinal) || c.StartsWith("a workload without an ApiSpec", StringComparison.Ordinal)));

            var controlPlane = report.RootElement.GetProperty("controlPlane");
            Assert.True(controlPlane.GetProperty("signing").GetProperty("signingsPerSecond").GetProperty("median").GetDouble() > 0, "no signings measured");
            var level = Assert.Single(controlPlane.GetProperty("propagation").GetProperty("levels").EnumerateArray());
            Assert.Equal(50, level.GetProperty("sidecars").GetInt32());
            Assert.True(level.GetProperty("p99Ms").GetProperty("median").GetDouble() > 0, "no propagation measured");
            foreach (var (name, target) in targets)
            {
                Assert.True(target.GetProperty("capacityPerSecond").GetProperty("median").GetDouble() > 0, $"{name}: no capacity");
                AssertNoErrorsFromOurs(name, $"capacity {name}", target.GetProperty("capacityErrors"));
                AssertNoErrorsFromOurs(name, $"rate {name}", target.GetProperty("rateErrors"));
                Assert.True(target.GetProperty("rateP50Ms").GetProperty("median").GetDouble() > 0, $"{name}: no latency");
            }
            foreach (var sidecar in targets["ztm-sidecar-pair"].GetProperty("processes").EnumerateArray())
            {
                Assert.True(sidecar.GetProperty("idleRssMb").GetDouble() > 0);
            }

            // Idle memory split of every proxy; the bare NativeAOT stack needs an AOT build this test does not make,
            // so its row is skipped with the reason in the report.
            var idle = report.RootElement.GetProperty("idleMemory").EnumerateArray().ToList();
            foreach (var sidecar in idle.Where(m => m.GetProperty("target").GetString() == "ztm-sidecar-pair"))
            {
                Assert.True(sidecar.GetProperty("rssAnonMb").GetDouble() > 0 && sidecar.GetProperty("rssFileMb").GetDouble() > 0);
                Assert.True(sidecar.GetProperty("vmRssAfterProbesMb").GetDouble() > 0, "no idle read 3 s after the probes");
            }
            Assert.Equal(2, idle.Count(m => m.GetProperty("target").GetString() == "ztm-sidecar-pair"));
            Assert.DoesNotContain(idle, m => m.GetProperty("target").GetString() == "bare-stack");
            Assert.Contains("Bare stack skipped", markdown, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(results, recursive: true);
        }
    }

    /// <summary>
    /// The direct baseline, the sidecar pair and the bare-stack pair (our ztm-bare-proxy) must serve every request. HAProxy
    /// and nginx are the yardsticks, not what
    /// this test checks: on a loaded 2-core CI host they have dropped a share of new connections (72 of 163 once), which
    /// the report states with the reasons; the harness still must have measured them.
    /// </summary>
    private void AssertNoErrorsFromOurs(string target, string what, JsonElement errors)
    {
        var median = errors.GetProperty("median").GetDouble();
        if (target is "direct" or "ztm-sidecar-pair" or "bare-stack-pair" or "floor-relay-pair")
        {
            Assert.True(median == 0, $"{what}: {median} errors (the report's 'What the errors were' says which)");
        }
        else if (median > 0)
        {
            output.WriteLine($"{what}: {median} errors from the baseline proxy, reported with their kinds");
        }
    }
}
