using System.Diagnostics;

namespace ZeroTrustMesh.Pods.Tests.Infrastructure;

/// <summary>
/// The images the pods run, built by <c>scripts/build-images.sh</c> once per test run: it publishes and builds only what
/// changed since the images were made, so with nothing changed it takes seconds.
/// </summary>
internal static class MeshImages
{
    public const string Tag = "0.1.0";
    public const string Sidecar = "ztm-sidecar:" + Tag;
    public const string ControlPlane = "ztm-controlplane:" + Tag;
    public const string DemoApp = "ztm-demo-app:" + Tag;
    public const string Tools = "ztm-test-tools:" + Tag;

    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(20);
    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static bool _built;

    public static async Task EnsureBuiltAsync(Action<string> log)
    {
        await Gate.WaitAsync();
        try
        {
            if (_built)
            {
                return;
            }
            var started = Stopwatch.StartNew();
            // Niced: the publish competes with the other test projects for the cores.
            var start = new ProcessStartInfo("nice") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Repository.Root };
            foreach (var arg in (string[])["-n", "10", "bash", Path.Combine(Repository.Root, "scripts", "build-images.sh")])
            {
                start.ArgumentList.Add(arg);
            }
            using var process = Process.Start(start)!;
            var lines = new List<string>();
            void Collect(object? _, DataReceivedEventArgs e)
            {
                if (e.Data is { } line)
                {
                    lock (lines)
                    {
                        lines.Add(line);
                    }
                }
            }
            process.OutputDataReceived += Collect;
            process.ErrorDataReceived += Collect;
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            using var timeout = new CancellationTokenSource(BuildTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"scripts/build-images.sh did not finish within {BuildTimeout}: {string.Join('\n', lines.TakeLast(20))}");
            }
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"scripts/build-images.sh exited {process.ExitCode}:\n{string.Join('\n', lines.TakeLast(30))}");
            }
            foreach (var line in lines.Where(l => l.StartsWith("build-images:", StringComparison.Ordinal) || l.StartsWith("ztm-", StringComparison.Ordinal)))
            {
                log(line);
            }
            log($"images ready in {started.Elapsed.TotalSeconds:0.0} s");
            _built = true;
        }
        finally
        {
            Gate.Release();
        }
    }
}
