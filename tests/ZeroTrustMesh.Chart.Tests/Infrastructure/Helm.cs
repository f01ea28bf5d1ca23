using System.Diagnostics;
using System.Reflection;
using System.Text;

namespace ZeroTrustMesh.Chart.Tests.Infrastructure;

/// <summary>Runs a test only where a Helm 3 binary is found; otherwise skips it with how to get one.</summary>
internal sealed class HelmFactAttribute : FactAttribute
{
    public HelmFactAttribute()
    {
        if (Helm.Path is null)
        {
            Skip = Helm.MissingReason;
        }
    }
}

/// <inheritdoc cref="HelmFactAttribute"/>
internal sealed class HelmTheoryAttribute : TheoryAttribute
{
    public HelmTheoryAttribute()
    {
        if (Helm.Path is null)
        {
            Skip = Helm.MissingReason;
        }
    }
}

/// <summary>What one helm command did.</summary>
internal sealed record HelmResult(int ExitCode, string Output, string Error)
{
    public HelmResult EnsureSuccess(string what) =>
        ExitCode == 0 ? this : throw new InvalidOperationException($"{what} failed (exit {ExitCode}):\n{Error}\n{Output}");
}

/// <summary>
/// The helm binary: <c>$ZTM_HELM</c>, else <c>helm</c> on PATH, else where <c>scripts/install-helm.sh</c> puts it.
/// Commands run with their own HOME-free cache and config folders, so a test never reads or writes a user's repositories.
/// </summary>
internal static class Helm
{
    public const string MissingReason =
        "helm 3 not found ($ZTM_HELM, PATH, /usr/local/bin/helm, ~/.ztm/tools/helm): run scripts/install-helm.sh";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    public static string? Path { get; } = Find();

    public static string RepoRoot { get; } = typeof(Helm).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepoRoot").Value!;

    public static string ChartDirectory => System.IO.Path.Combine(RepoRoot, "charts", "zero-trust-mesh");

    public static string FixturesDirectory => System.IO.Path.Combine(AppContext.BaseDirectory, "Fixtures");

    private static string? Find()
    {
        var candidates = new List<string?>
        {
            Environment.GetEnvironmentVariable("ZTM_HELM"),
            Executable("helm"),
            "/usr/local/bin/helm",
            System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".ztm", "tools", "helm"),
        };
        return candidates.FirstOrDefault(c => !string.IsNullOrEmpty(c) && File.Exists(c));
    }

    private static string? Executable(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => System.IO.Path.Combine(d, name))
            .FirstOrDefault(File.Exists);

    /// <summary><c>helm template ztm CHART --namespace NS [-f values.yaml]</c>.</summary>
    public static Task<HelmResult> TemplateAsync(string chart, string @namespace = "ztm-system", string? valuesYaml = null) =>
        WithValuesAsync(valuesYaml, values => RunAsync(["template", "ztm", chart, "--namespace", @namespace, .. values]));

    /// <summary><c>helm lint --strict CHART [-f values.yaml]</c>.</summary>
    public static Task<HelmResult> LintAsync(string chart, string? valuesYaml = null) =>
        WithValuesAsync(valuesYaml, values => RunAsync(["lint", "--strict", chart, "--namespace", "ztm-system", .. values]));

    private static async Task<HelmResult> WithValuesAsync(string? valuesYaml, Func<string[], Task<HelmResult>> run)
    {
        if (valuesYaml is null)
        {
            return await run([]);
        }
        var file = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"ztm-values-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(file, valuesYaml);
        try
        {
            return await run(["--values", file]);
        }
        finally
        {
            File.Delete(file);
        }
    }

    public static async Task<HelmResult> RunAsync(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(Path ?? throw new InvalidOperationException(MissingReason))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        var scratch = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ztm-chart-tests-helm");
        start.Environment["HELM_CACHE_HOME"] = System.IO.Path.Combine(scratch, "cache");
        start.Environment["HELM_CONFIG_HOME"] = System.IO.Path.Combine(scratch, "config");
        start.Environment["HELM_DATA_HOME"] = System.IO.Path.Combine(scratch, "data");
        start.Environment["KUBECONFIG"] = "/dev/null";
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(Timeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"helm {string.Join(' ', start.ArgumentList)} did not finish in {Timeout.TotalSeconds} s");
        }
        return new HelmResult(process.ExitCode, await output, await error);
    }
}

/// <summary>
/// A copy of the chart in a temporary folder, with the test's own dashboards and alert rules in place of the chart's
/// (dashboards/ and rules/ belong to the metrics work; the tests must not depend on what is there). Deleted on dispose.
/// </summary>
internal sealed class ChartCopy : IDisposable
{
    private ChartCopy(string directory) => Directory = directory;

    public string Directory { get; }

    /// <param name="withFixtures">Copy Fixtures/dashboards and Fixtures/rules in; false leaves both folders out.</param>
    public static ChartCopy Create(bool withFixtures = true)
    {
        var root = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"ztm-chart-{Guid.NewGuid():N}");
        var chart = System.IO.Path.Combine(root, "zero-trust-mesh");
        Copy(Helm.ChartDirectory, chart, skip: ["dashboards", "rules"]);
        if (withFixtures)
        {
            Copy(System.IO.Path.Combine(Helm.FixturesDirectory, "dashboards"), System.IO.Path.Combine(chart, "dashboards"), skip: []);
            Copy(System.IO.Path.Combine(Helm.FixturesDirectory, "rules"), System.IO.Path.Combine(chart, "rules"), skip: []);
        }
        return new ChartCopy(chart);
    }

    private static void Copy(string from, string to, string[] skip)
    {
        System.IO.Directory.CreateDirectory(to);
        foreach (var file in System.IO.Directory.GetFiles(from))
        {
            File.Copy(file, System.IO.Path.Combine(to, System.IO.Path.GetFileName(file)));
        }
        foreach (var directory in System.IO.Directory.GetDirectories(from))
        {
            var name = System.IO.Path.GetFileName(directory);
            if (!skip.Contains(name, StringComparer.Ordinal))
            {
                Copy(directory, System.IO.Path.Combine(to, name), []);
            }
        }
    }

    public void Dispose() => System.IO.Directory.Delete(System.IO.Path.GetDirectoryName(Directory)!, recursive: true);
}

internal static class Text
{
    public static string Lines(IEnumerable<string> lines)
    {
        var text = new StringBuilder();
        foreach (var line in lines)
        {
            text.Append("  ").AppendLine(line);
        }
        return text.ToString();
    }
}
