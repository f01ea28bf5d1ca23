using System.Globalization;
using System.Text.Json;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>signing-load in one line of the combined report: signings/s and server CPU per signing over the rounds.</summary>
internal sealed record SigningFiguresJson(string File, int Concurrency, double SecondsPerPhase, Stat SigningsPerSecond, Stat BaselinePerSecond, Stat SigningToBaseline,
    Stat ServerCpuMicrosPerSigning, long Errors);

/// <summary>policy-propagation at one N: per-change p50/p99 time to the new version over the N sidecars, summarized over the changes.</summary>
internal sealed record PropagationLevelJson(int Sidecars, int Changes, Stat P50Ms, Stat P99Ms, Stat AllAckedMs, double RssConnectedMb, double KibPerSidecar);

internal sealed record PropagationFiguresJson(string File, int Identities, double RssIdleMb, IReadOnlyList<PropagationLevelJson> Levels, int FailedStreams);

internal sealed record ControlPlaneFiguresJson(SigningFiguresJson? Signing, string? SigningSkipped, PropagationFiguresJson? Propagation, string? PropagationSkipped);

/// <summary>
/// The control-plane part of <c>benchmarks/run</c>: runs the <c>signing-load</c> and <c>policy-propagation</c> subcommands
/// in this process, each against its own control-plane process and writing its own <c>&lt;stem&gt;.json</c>/<c>.md</c> into
/// the run's results directory, then reads the figures back from those JSON files. Their own reports stay the detail;
/// this is the summary next to the data plane. Each is bounded by its own timeout and the caller's cancellation.
/// </summary>
internal static class ControlPlaneFigures
{
    public sealed record Options(string ControlPlaneDll, string ResultsDir, bool Quick, string Sidecars, int Identities);

    public static async Task<ControlPlaneFiguresJson> RunAsync(Options options, CancellationToken cancellation)
    {
        string[] signingArgs = options.Quick
            ? ["--duration", "1s", "--warmup", "0.5s", "--concurrency", "4", "--rounds", "1", "--csrs", "16"]
            : ["--duration", "5s", "--warmup", "2s", "--concurrency", "16", "--rounds", "3"];
        string[] propagationArgs = options.Quick
            ? ["--sidecars", "50", "--changes", "1", "--warmup-changes", "0", "--identities", "5", "--settle", "0.2s", "--timeout", "2m"]
            : ["--sidecars", options.Sidecars, "--changes", "3", "--warmup-changes", "1", "--identities", options.Identities.ToString(CultureInfo.InvariantCulture), "--timeout", "8m"];
        string[] common = ["--controlplane", options.ControlPlaneDll, "--results", options.ResultsDir];

        SigningFiguresJson? signing = null;
        string? signingSkipped = null;
        var (code, file) = await InvokeAsync(SigningLoad.Command(), [.. signingArgs, .. common], options.ResultsDir, "signing-load-", cancellation);
        if (file is null)
        {
            signingSkipped = $"signing-load exited with {code} and wrote no JSON";
        }
        else
        {
            signing = ReadSigning(file);
        }

        PropagationFiguresJson? propagation = null;
        string? propagationSkipped = null;
        (code, file) = await InvokeAsync(PolicyPropagation.Command(), [.. propagationArgs, .. common], options.ResultsDir, "policy-propagation-", cancellation);
        if (file is null)
        {
            propagationSkipped = $"policy-propagation exited with {code} and wrote no JSON";
        }
        else
        {
            propagation = ReadPropagation(file);
        }
        return new ControlPlaneFiguresJson(signing, signingSkipped, propagation, propagationSkipped);
    }

    /// <summary>Runs a subcommand with its markdown sent to stderr (stdout is this report's), and finds the JSON it wrote.</summary>
    private static async Task<(int Code, string? File)> InvokeAsync(System.CommandLine.RootCommand command, string[] args, string dir, string prefix, CancellationToken cancellation)
    {
        Console.Error.WriteLine($"dataplane-load: running {prefix.TrimEnd('-')} {string.Join(' ', args)}");
        var before = Directory.GetFiles(dir, prefix + "*.json").ToHashSet();
        var stdout = Console.Out;
        Console.SetOut(Console.Error);
        int code;
        try
        {
            code = await command.Parse(args).InvokeAsync(cancellationToken: cancellation);
        }
        finally
        {
            Console.SetOut(stdout);
        }
        var written = Directory.GetFiles(dir, prefix + "*.json").Where(f => !before.Contains(f)).Order().LastOrDefault();
        return (code, code == 0 ? written : null);
    }

    private static SigningFiguresJson ReadSigning(string file)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        var root = json.RootElement;
        var ratios = root.GetProperty("ratios").EnumerateArray().ToList();
        var signPhases = root.GetProperty("phases").EnumerateArray().Where(p => p.GetProperty("phase").GetString() == LoadReport.SignPhase).ToList();
        var settings = root.GetProperty("settings");
        return new SigningFiguresJson(Path.GetFileName(file), settings.GetProperty("concurrency").GetInt32(), settings.GetProperty("durationSeconds").GetDouble(),
            Stat.Of(ratios.Select(r => Number(r.GetProperty("signingsPerSecond")))),
            Stat.Of(ratios.Select(r => Number(r.GetProperty("baselinePerSecond")))),
            Stat.Of(ratios.Select(r => Number(r.GetProperty("signingToBaseline")))),
            Stat.Of(signPhases.Select(p => Number(p.GetProperty("serverCpuMicrosPerCall")))),
            signPhases.Sum(p => p.GetProperty("errors").GetInt64()));
    }

    private static PropagationFiguresJson ReadPropagation(string file)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        var root = json.RootElement;
        var levels = root.GetProperty("levels").EnumerateArray().Select(level =>
        {
            var changes = level.GetProperty("changes").EnumerateArray().ToList();
            return new PropagationLevelJson(level.GetProperty("sidecars").GetInt32(), changes.Count,
                Stat.Of(changes.Select(c => Number(c.GetProperty("received").GetProperty("p50")))),
                Stat.Of(changes.Select(c => Number(c.GetProperty("received").GetProperty("p99")))),
                Stat.Of(changes.Select(c => Number(c.GetProperty("allAckedMs")))),
                Number(level.GetProperty("rssConnectedMb")), Number(level.GetProperty("kibPerSidecar")));
        }).ToList();
        return new PropagationFiguresJson(Path.GetFileName(file), root.GetProperty("identities").GetInt32(), Number(root.GetProperty("rssIdleMb")), levels,
            root.GetProperty("failedStreams").GetInt32());
    }

    /// <summary>A number, or NaN where the report wrote a named literal ("NaN") for a figure it could not take.</summary>
    private static double Number(JsonElement element) => element.ValueKind == JsonValueKind.Number ? element.GetDouble() : double.NaN;
}
