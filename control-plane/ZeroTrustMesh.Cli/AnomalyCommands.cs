using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.Cli;

/// <summary><c>ztmctl anomalies [-o json]</c>: callers throttled or quarantined now, and past transitions, with their evidence.</summary>
internal static class AnomalyCommands
{
    public static Command Command()
    {
        var command = new Command("anomalies", "Callers that anomaly response throttles or quarantines now, and past transitions with their evidence");
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var response = await new AnomalyAdmin.AnomalyAdminClient(channel).ListAsync(new AnomalyListRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
            var output = new AnomaliesOutput(
                response.Replica, response.Leading, response.Tracked, response.Untracked,
                [.. response.Current.Select(c => new CurrentOutput(c.Caller, c.Workload, c.Route, c.State, c.Since.ToDateTimeOffset(), c.Policy, c.Mode, Evidence(c.Evidence)))],
                [.. response.Transitions.Select(t => new TransitionOutput((long)t.Id, t.At.ToDateTimeOffset(), t.Caller, t.Workload, t.Route, t.From, t.To, t.Policy, t.Mode,
                    t.Reason, t.Action, Evidence(t.Evidence)))]);
            if (parse.GetValue(Ztmctl.OutputOption) == "json")
            {
                Console.WriteLine(JsonSerializer.Serialize(output, AnomalyJson.Default.AnomaliesOutput));
                return 0;
            }
            Console.WriteLine("NOW");
            Console.WriteLine($"{"CALLER",-50} {"WORKLOAD",-20} {"ROUTE",-24} {"STATE",-11} {"SINCE",-20} {"MODE",-7} {"RATE/MIN",9} {"BASELINE",9}");
            foreach (var c in output.Current)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{c.Caller,-50} {c.Workload,-20} {c.Route,-24} {c.State,-11} {c.Since:yyyy-MM-ddTHH:mm:ssZ} {c.Mode,-7} {c.Evidence.RatePerMinute,9:0.#} {c.Evidence.BaselinePerMinute,9:0.##}"));
            }
            Console.WriteLine();
            Console.WriteLine("TRANSITIONS");
            foreach (var t in output.Transitions)
            {
                Console.WriteLine($"#{t.Id} {t.At:yyyy-MM-ddTHH:mm:ssZ} {t.Caller} -> {t.Workload} {t.Route}: {t.From} -> {t.To} ({t.Mode}, {t.Policy}); {t.Reason}; action: {t.Action}");
            }
            Console.WriteLine($"{output.Current.Count} caller(s) restricted now, {output.Transitions.Count} transition(s); replica {output.Replica}{(output.Leading ? " (leader)" : " (not the leader: it acts on nothing)")}, "
                + $"{output.Tracked} caller×route tracked{(output.Untracked > 0 ? $", {output.Untracked} observation(s) untracked (bound reached)" : "")}");
            return 0;
        }, cancellation));
        return command;
    }

    private static EvidenceOutput Evidence(AnomalyEvidenceProto? e) => e is null ? new(0, 0, 0, 0, 0, 0, 0, 0, 0, 0) : new(
        e.RatePerMinute, e.BaselinePerMinute, e.ErrorRatio, e.BaselineErrorRatio, (long)e.Requests, e.Share, e.Multiple, e.MinimumRate, e.MaxErrorRatio, e.HistorySeconds);
}

internal sealed record EvidenceOutput(
    double RatePerMinute, double BaselinePerMinute, double ErrorRatio, double BaselineErrorRatio, long Requests, double Share, double Multiple, uint MinimumRate,
    double MaxErrorRatio, double HistorySeconds);

internal sealed record CurrentOutput(string Caller, string Workload, string Route, string State, DateTimeOffset Since, string Policy, string Mode, EvidenceOutput Evidence);

internal sealed record TransitionOutput(
    long Id, DateTimeOffset At, string Caller, string Workload, string Route, string From, string To, string Policy, string Mode, string Reason, string Action,
    EvidenceOutput Evidence);

internal sealed record AnomaliesOutput(string Replica, bool Leading, uint Tracked, ulong Untracked, IReadOnlyList<CurrentOutput> Current, IReadOnlyList<TransitionOutput> Transitions);

[JsonSerializable(typeof(AnomaliesOutput))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class AnomalyJson : JsonSerializerContext;
