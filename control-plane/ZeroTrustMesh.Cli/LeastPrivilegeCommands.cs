using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.Cli;

/// <summary>
/// <c>ztmctl policy suggest | audit-report</c>: least privilege from traffic (issue 19, section 5). Suggest writes
/// AuthorizationPolicies from what sidecars observed; applied as AUDIT, audit-report shows what each would deny.
/// </summary>
internal static class LeastPrivilegeCommands
{
    public static Command Suggest()
    {
        var ns = new Option<string>("--namespace", "-n") { Description = "The namespace whose workloads to write policies for", Required = true };
        var since = new Option<string?>("--since") { Description = "Only callers seen within this long, e.g. 1h, 30m, 7d (default: everything observed)" };
        var action = new Option<string>("--action") { Description = "AUDIT (try first: nothing is denied) or ALLOW", DefaultValueFactory = _ => "AUDIT" };
        action.AcceptOnlyFromAmong("AUDIT", "ALLOW");
        var file = new Option<string?>("--filename", "-f") { Description = "Write the YAML to this file (default: standard output)" };
        var command = new Command("suggest", "AuthorizationPolicies that allow exactly the observed caller x method x path template combinations, each rule with its evidence")
        {
            ns, since, action, file,
        };
        command.SetAction((parse, cancellation) =>
        {
            var window = TimeSpan.Zero;
            if (parse.GetValue(since) is { } text && (!Durations.TryParse(text, out window) || window <= TimeSpan.Zero))
            {
                return Task.FromResult(Ztmctl.Fail(Ztmctl.UsageError, $"--since '{text}' is not a duration: use e.g. 30m, 1h, 7d"));
            }
            return Ztmctl.CallAsync(parse, async (channel, ct) =>
            {
                var response = await new ApiAdmin.ApiAdminClient(channel).SuggestAsync(new PolicySuggestRequest
                {
                    Namespace = parse.GetValue(ns)!,
                    SinceSeconds = (ulong)window.TotalSeconds,
                    Action = parse.GetValue(action)!,
                }, deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct);
                if (parse.GetValue(file) is { } path)
                {
                    try
                    {
                        await File.WriteAllTextAsync(path, response.Yaml, ct);
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                        return Ztmctl.Fail(Ztmctl.Refused, $"cannot write {path}: {e.Message}");
                    }
                }
                if (parse.GetValue(Ztmctl.OutputOption) == "json")
                {
                    Console.WriteLine(JsonSerializer.Serialize(new SuggestOutput((int)response.Policies, (int)response.Rules, [.. response.Skipped], response.Yaml), LeastPrivilegeJson.Default.SuggestOutput));
                    return 0;
                }
                if (parse.GetValue(file) is null)
                {
                    Console.Write(response.Yaml);
                }
                // The summary goes to stderr when the YAML is on stdout, so that '> file' keeps a clean document.
                var summary = parse.GetValue(file) is null ? Console.Error : Console.Out;
                summary.WriteLine($"{response.Policies} policy(ies), {response.Rules} rule(s){(parse.GetValue(file) is { } f ? $" written to {f}" : "")}");
                foreach (var line in response.Skipped)
                {
                    summary.WriteLine($"not suggested: {line}");
                }
                return 0;
            }, cancellation);
        });
        return command;
    }

    public static Command AuditReport()
    {
        var ns = new Option<string?>("--namespace", "-n") { Description = "Only the AUDIT policies of this namespace" };
        var command = new Command("audit-report", "Per AUDIT AuthorizationPolicy: requests it applied to and how many it would have denied as ALLOW") { ns };
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var response = await new ApiAdmin.ApiAdminClient(channel).AuditReportAsync(new AuditReportRequest { Namespace = parse.GetValue(ns) ?? "" },
                deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct);
            var policies = response.Policies.Select(p => new AuditPolicyOutput(p.Policy, p.Generation, p.Since?.ToDateTimeOffset(), (long)p.Requests, (long)p.WouldDeny,
                p.FirstSeen?.ToDateTimeOffset(), p.LastSeen?.ToDateTimeOffset(), p.LastWouldDeny?.ToDateTimeOffset(), [.. p.RecentWouldDeny])).ToList();
            if (parse.GetValue(Ztmctl.OutputOption) == "json")
            {
                Console.WriteLine(JsonSerializer.Serialize(policies, LeastPrivilegeJson.Default.ListAuditPolicyOutput));
                return 0;
            }
            if (policies.Count == 0)
            {
                Console.WriteLine("no AUDIT policy is in force");
                return 0;
            }
            // SINCE: when the policy's current content was applied; counting starts over with each change of its spec.
            Console.WriteLine($"{"POLICY",-40} {"REQUESTS",9} {"WOULD DENY",10}  {"SINCE",-20}  {"LAST SEEN",-20}  LAST WOULD DENY");
            foreach (var p in policies)
            {
                Console.WriteLine($"{p.Policy,-40} {p.Requests,9} {p.WouldDeny,10}  {Time(p.Since),-20}  {Time(p.LastSeen),-20}  {Time(p.LastWouldDeny)}");
                foreach (var sample in p.RecentWouldDeny)
                {
                    Console.WriteLine($"  would deny: {sample}");
                }
            }
            return 0;
        }, cancellation));
        return command;
    }

    private static string Time(DateTimeOffset? at) => at is { } t ? t.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) : "never";
}

internal sealed record SuggestOutput(int Policies, int Rules, IReadOnlyList<string> Skipped, string Yaml);

/// <param name="Since">When the policy's content (<paramref name="Generation"/>) was applied: the counts are since then.</param>
internal sealed record AuditPolicyOutput(
    string Policy, string Generation, DateTimeOffset? Since, long Requests, long WouldDeny, DateTimeOffset? FirstSeen, DateTimeOffset? LastSeen, DateTimeOffset? LastWouldDeny,
    IReadOnlyList<string> RecentWouldDeny);

[JsonSerializable(typeof(SuggestOutput))]
[JsonSerializable(typeof(List<AuditPolicyOutput>))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
internal sealed partial class LeastPrivilegeJson : JsonSerializerContext;
