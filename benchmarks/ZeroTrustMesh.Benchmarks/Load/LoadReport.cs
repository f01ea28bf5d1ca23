using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>One measured phase: a fixed-concurrency, fixed-duration run of one kind of call.</summary>
internal sealed record PhaseResult(
    int Round,
    string Phase,
    string Description,
    long Completed,
    long Errors,
    IReadOnlyDictionary<string, long> ErrorsByKind,
    double Seconds,
    double PerSecond,
    double MeanMs,
    double P50Ms,
    double P99Ms,
    double ServerCpuMicrosPerCall,
    double ClientCpuMicrosPerCall,
    double ServerCoresBusy,
    double ClientCoresBusy,
    long ServerIssuedLogLines);

internal sealed record LoadSettingsJson(double DurationSeconds, double WarmupSeconds, int Concurrency, int Channels, int Csrs, int Rounds, string ControlPlaneDll);

internal sealed record MachineJson(int ProcessorCount, string Os, string Runtime);

/// <summary>The signing rate per round as a ratio of the plain gRPC round-trip rate measured in the same round.</summary>
/// <remarks>
/// Rates on a shared host swing with whatever else runs; the server CPU per call is steadier, so the report also gives
/// the signing's server CPU as a multiple of the baseline call's, and what that cost allows on all of this host's cores.
/// </remarks>
internal sealed record RatioJson(int Round, double SigningsPerSecond, double BaselinePerSecond, double AuthOnlyPerSecond, double SigningToBaseline, double SigningToAuthOnly,
    double ServerCpuSigningToBaseline, double SigningsPerSecondIfServerHadAllCores);

internal sealed record LoadReport(
    DateTimeOffset Date,
    MachineJson Machine,
    LoadSettingsJson Settings,
    IReadOnlyList<PhaseResult> Phases,
    IReadOnlyList<RatioJson> Ratios,
    double TargetSigningsPerSecond,
    bool TargetMet)
{
    public const string BaselinePhase = "baseline-empty-csr";
    public const string AuthPhase = "renew-invalid-csr";
    public const string SignPhase = "renew-sign";

    public static LoadReport Create(DateTimeOffset date, LoadSettingsJson settings, IReadOnlyList<PhaseResult> phases, double target)
    {
        var ratios = phases.GroupBy(p => p.Round).Select(round =>
        {
            double Rate(string phase) => round.FirstOrDefault(p => p.Phase == phase)?.PerSecond ?? double.NaN;
            double Cpu(string phase) => round.FirstOrDefault(p => p.Phase == phase)?.ServerCpuMicrosPerCall ?? double.NaN;
            var sign = Rate(SignPhase);
            return new RatioJson(round.Key, sign, Rate(BaselinePhase), Rate(AuthPhase), sign / Rate(BaselinePhase), sign / Rate(AuthPhase),
                Cpu(SignPhase) / Cpu(BaselinePhase), Environment.ProcessorCount * 1e6 / Cpu(SignPhase));
        }).ToList();
        var best = ratios.Count == 0 ? 0 : ratios.Max(r => r.SigningsPerSecond);
        return new LoadReport(date, new MachineJson(Environment.ProcessorCount, Environment.OSVersion.ToString(), Environment.Version.ToString()),
            settings, phases, ratios, target, best >= target);
    }

    public string ToJson() => JsonSerializer.Serialize(this, LoadReportJson.Default.LoadReport);

    public string ToMarkdown()
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine(inv, $"## signing-load {Date:yyyy-MM-dd HH:mm} UTC");
        md.AppendLine();
        md.AppendLine(inv, $"{Machine.ProcessorCount} cores, {Machine.Os}, .NET {Machine.Runtime}; control plane and load client on the same host (loopback, mTLS, HTTP/2).");
        md.AppendLine(inv, $"concurrency {Settings.Concurrency} over {Settings.Channels} channel(s), warm-up {Settings.WarmupSeconds:0.#}s, measured {Settings.DurationSeconds:0.#}s per phase, {Settings.Rounds} round(s), {Settings.Csrs} pre-generated CSRs.");
        md.AppendLine();
        md.AppendLine("| round | phase | calls/s | p50 ms | p99 ms | errors | server CPU µs/call | client CPU µs/call | server cores busy | client cores busy |");
        md.AppendLine("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var p in Phases)
        {
            md.AppendLine(inv, $"| {p.Round} | {p.Phase} | {p.PerSecond:0} | {p.P50Ms:0.00} | {p.P99Ms:0.00} | {p.Errors} | {p.ServerCpuMicrosPerCall:0} | {p.ClientCpuMicrosPerCall:0} | {p.ServerCoresBusy:0.00} | {p.ClientCoresBusy:0.00} |");
        }
        md.AppendLine();
        md.AppendLine("| round | signings/s | baseline (SignCertificate with an empty CSR, refused)/s | signing ÷ baseline | renew with invalid CSR/s | signing ÷ invalid-CSR renew | server CPU: signing ÷ baseline | signings/s if the server had all cores |");
        md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in Ratios)
        {
            md.AppendLine(inv, $"| {r.Round} | {r.SigningsPerSecond:0} | {r.BaselinePerSecond:0} | {r.SigningToBaseline:0.000} | {r.AuthOnlyPerSecond:0} | {r.SigningToAuthOnly:0.000} | {r.ServerCpuSigningToBaseline:0.0}× | {r.SigningsPerSecondIfServerHadAllCores:0} |");
        }
        md.AppendLine();
        md.AppendLine(inv, $"Target ≥ {TargetSigningsPerSecond:0} signings/s: {(TargetMet ? "met" : "NOT met")} (best round).");
        foreach (var p in Phases.Where(p => p.ErrorsByKind.Count > 0))
        {
            md.AppendLine(inv, $"- round {p.Round} {p.Phase} errors: {string.Join(", ", p.ErrorsByKind.Select(e => $"{e.Key}×{e.Value}"))}");
        }
        return md.ToString();
    }
}

[JsonSerializable(typeof(LoadReport))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
internal sealed partial class LoadReportJson : JsonSerializerContext;
