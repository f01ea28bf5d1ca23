using System.Diagnostics;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// The data-plane load harness (<c>benchmarks/run</c>, <c>dataplane-load</c>) in its <c>--quick</c> mode, so it cannot rot:
/// it must start the control plane, the demo app and the sidecar pair (this build's sidecar, not NativeAOT), drive
/// every target without errors and write both reports. No root needed: without wrk it uses its in-process client,
/// and without haproxy it skips only the HAProxy pair and says so in the report. The figures are not checked.
/// </summary>
public sealed class BenchmarkHarnessSmokeTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(4);

    [Fact]
    public async Task Quick_dataplane_load_drives_every_target_and_writes_both_reports()
    {
        var results = Directory.CreateTempSubdirectory("ztm-dataplane-smoke-").FullName;
        try
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var arg in new[] { Executables.Benchmarks, "dataplane-load", "--quick", "--results", results,
                "--controlplane", Executables.ControlPlane, "--sidecar", Executables.Sidecar, "--demo-app", Executables.DemoApp })
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
            var haproxySkipped = report.RootElement.GetProperty("settings").GetProperty("haproxySkipped");
            var expected = haproxySkipped.ValueKind == JsonValueKind.Null
                ? new[] { "direct", "ztm-sidecar-pair", "haproxy-pair" }
                : ["direct", "ztm-sidecar-pair"];
            Assert.Equal(expected, targets.Keys.ToArray());
            if (haproxySkipped.ValueKind != JsonValueKind.Null)
            {
                Assert.Contains("HAProxy pair skipped", await stdout, StringComparison.Ordinal);
                output.WriteLine($"HAProxy pair skipped by the harness: {haproxySkipped.GetString()}");
            }
            foreach (var (name, target) in targets)
            {
                Assert.True(target.GetProperty("capacityPerSecond").GetProperty("median").GetDouble() > 0, $"{name}: no capacity");
                Assert.Equal(0, target.GetProperty("capacityErrors").GetProperty("median").GetDouble());
                Assert.Equal(0, target.GetProperty("rateErrors").GetProperty("median").GetDouble());
                Assert.True(target.GetProperty("rateP50Ms").GetProperty("median").GetDouble() > 0, $"{name}: no latency");
            }
            foreach (var sidecar in targets["ztm-sidecar-pair"].GetProperty("processes").EnumerateArray())
            {
                Assert.True(sidecar.GetProperty("idleRssMb").GetDouble() > 0);
            }
        }
        finally
        {
            Directory.Delete(results, recursive: true);
        }
    }
}
