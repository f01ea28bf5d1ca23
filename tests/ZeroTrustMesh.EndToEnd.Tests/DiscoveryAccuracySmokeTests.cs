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
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var arg in new[] { Executables.Benchmarks, "discovery-accuracy", "--openapi", dir, "--requests-per-endpoint", "20" })
            {
                start.ArgumentList.Add(arg);
            }
            using var harness = Process.Start(start)!;
            var stdout = harness.StandardOutput.ReadToEndAsync();
            var stderr = harness.StandardError.ReadToEndAsync();
            await harness.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));

            Assert.True(harness.ExitCode == 0, await stderr);
            // 20 requests per operation: 3 templates found and right, the keys operation is the one shadow API, found.
            Assert.Contains("| 20 | 3 | 3 | 100.00 % | 100.00 % | 1.0000 | 0 (0.00 %) | 0 | 1 | 100.00 % | 100.00 % |", await stdout, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
