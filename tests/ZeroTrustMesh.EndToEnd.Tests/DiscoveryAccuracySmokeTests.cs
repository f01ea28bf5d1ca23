using System.Diagnostics;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// <c>discovery-accuracy</c> (benchmarks/discovery-accuracy) on a two-operation description, so the harness cannot rot:
/// traffic from one spec, the other declared, one shadow operation found. The real figures come from GitHub's
/// descriptions, which the script fetches with npm.
/// </summary>
public sealed class DiscoveryAccuracySmokeTests
{
    [Fact]
    public async Task Scores_templates_and_shadow_operations_of_a_small_description()
    {
        var dir = Directory.CreateTempSubdirectory("ztm-discovery-").FullName;
        try
        {
            await File.WriteAllTextAsync(Path.Combine(dir, "api.github.com.json"), """
                {"openapi":"3.0.3","paths":{
                  "/users/{username}":{"get":{"parameters":[{"name":"username","in":"path","required":true,"schema":{"type":"string"}}]}},
                  "/users/{username}/keys/{key_id}":{"get":{"parameters":[{"name":"username","in":"path","schema":{"type":"string"}},{"name":"key_id","in":"path","schema":{"type":"integer"}}]}},
                  "/meta":{"get":{}}}}
                """);
            await File.WriteAllTextAsync(Path.Combine(dir, "ghes-3.19.json"), """
                {"openapi":"3.0.3","paths":{"/users/{username}":{"get":{}},"/meta":{"get":{}}}}
                """);
            var (exitCode, stdout, stderr) = await RunAsync("--openapi", dir, "--requests-per-endpoint", "20", "--seeds", "1,2");

            Assert.True(exitCode == 0, stderr);
            // 20 requests per operation, each seed: 3 templates found and right, the keys operation is the one shadow API, found.
            Assert.Contains("| 1 | 20 | 3 | 3 | 100.00 % | 100.00 % | 1.0000 | 0 (0.00 %) | 0 | 1 | 100.00 % | 100.00 % |", stdout, StringComparison.Ordinal);
            Assert.Contains("| 2 | 20 | 3 | 3 | 100.00 % | 100.00 % | 1.0000 | 0 (0.00 %) | 0 | 1 | 100.00 % | 100.00 % |", stdout, StringComparison.Ordinal);
            // and the worst of the seeds, with the seed it came from (the first one on a tie).
            Assert.Contains("| 20 | 1.0000 (1) | 0 (0.00 %) (1) | 100.00 % (1) | 100.00 % (1) |", stdout, StringComparison.Ordinal);

            var (badExit, _, badError) = await RunAsync("--openapi", dir, "--seeds", "1,two");
            Assert.Equal(2, badExit);
            Assert.Equal("discovery-accuracy: --seeds takes integers, not 'two'", badError.Trim());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { Executables.Benchmarks, "discovery-accuracy" }.Concat(args))
        {
            start.ArgumentList.Add(arg);
        }
        using var harness = Process.Start(start)!;
        var stdout = harness.StandardOutput.ReadToEndAsync();
        var stderr = harness.StandardError.ReadToEndAsync();
        await harness.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        return (harness.ExitCode, await stdout, await stderr);
    }
}
