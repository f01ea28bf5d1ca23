using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.Cli;

/// <summary>
/// <c>ztmctl api inventory | diff | skeleton</c>: the endpoints sidecars observed, per service, against its ApiSpec
/// (issue 19, section 2). An unknown service is refused by the control plane (NOT_FOUND: exit 1 with one line).
/// </summary>
internal static class ApiCommands
{
    public static Command Command() => new("api", "API discovery: what sidecars observed of each service's API") { Inventory(), Diff(), Skeleton() };

    private static Option<string> ServiceOption(bool required) => new("--service")
    {
        Description = "The service: orders.shop, or orders when one namespace has it" + (required ? "" : " (default: every service)"),
        Required = required,
    };

    private static Command Inventory()
    {
        var service = ServiceOption(required: false);
        var command = new Command("inventory", "The endpoints observed per service: method, template, requests, first and last seen, callers, status classes") { service };
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var response = await new ApiAdmin.ApiAdminClient(channel).InventoryAsync(new ApiInventoryRequest { Service = parse.GetValue(service) ?? "" },
                deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct);
            var services = response.Services.Select(s => new ServiceOutput(
                s.Service,
                s.ObservingSince?.ToDateTimeOffset(),
                (long)s.Requests, (long)s.Refused, (long)s.NotFound, (long)s.OverCap, (int)s.MaxPaths, [.. s.Pins],
                [.. s.Endpoints.Select(e => new EndpointOutput(e.Method, e.Template, (long)e.Requests, e.FirstSeen.ToDateTimeOffset(), e.LastSeen.ToDateTimeOffset(),
                    [.. e.Callers], e.CallersCapped, e.StatusClasses.OrderBy(c => c.Key, StringComparer.Ordinal).ToDictionary(c => c.Key, c => (long)c.Value),
                    [.. e.Evidence.Select(c => new CallerOutput(c.Caller, (long)c.Requests, c.FirstSeen.ToDateTimeOffset(), c.LastSeen.ToDateTimeOffset()))],
                    (long)e.UnattributedRequests))])).ToList();
            if (parse.GetValue(Ztmctl.OutputOption) == "json")
            {
                Console.WriteLine(JsonSerializer.Serialize(new InventoryOutput(services, (long)response.ServicesOverCap), ApiJson.Default.InventoryOutput));
                return 0;
            }
            if (services.Count == 0)
            {
                Console.WriteLine("nothing observed yet (sidecars report what they serve within a second or two; --observations false turns it off)");
            }
            foreach (var s in services)
            {
                Console.WriteLine($"{s.Service}: {s.Endpoints.Count} endpoint(s), {s.Requests} request(s) since {Time(s.ObservingSince)}"
                    + $" ({s.Refused} refused by the sidecar, {s.NotFound} answered 404: not inventoried)");
                if (s.OverCap > 0)
                {
                    Console.WriteLine($"  cap reached: {s.OverCap} request(s) to new paths not kept (at most {s.MaxPaths} distinct path segments per service: --api-max-paths)");
                }
                if (s.Pins.Count > 0)
                {
                    Console.WriteLine($"  pins: {string.Join(", ", s.Pins)}");
                }
                Console.WriteLine($"  {"METHOD",-7} {"TEMPLATE",-40} {"REQUESTS",8}  {"FIRST SEEN",-20}  {"LAST SEEN",-20}  {"CALLERS",7}  STATUS");
                foreach (var e in s.Endpoints)
                {
                    var callers = e.Callers.Count.ToString(CultureInfo.InvariantCulture) + (e.CallersCapped ? "+" : "");
                    Console.WriteLine($"  {e.Method,-7} {e.Template,-40} {e.Requests,8}  {Time(e.FirstSeen),-20}  {Time(e.LastSeen),-20}  {callers,7}  {string.Join(" ", e.StatusClasses.Select(c => $"{c.Key}:{c.Value}"))}");
                }
            }
            return 0;
        }, cancellation));
        return command;
    }

    private static Command Diff()
    {
        var service = ServiceOption(required: true);
        var command = new Command("diff", "The observed endpoints against the service's ApiSpec: shadow (called, not declared), zombie (deprecated, still called), unused (declared, not called)") { service };
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var response = await new ApiAdmin.ApiAdminClient(channel).DiffAsync(new ApiDiffRequest { Service = parse.GetValue(service)! },
                deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct);
            var output = new DiffOutput(response.Service, response.ApiSpec, (int)response.DeclaredOperations, (long)response.UnusedAfterSeconds, response.UnusedKnown,
                [.. response.Findings.Select(f => new FindingOutput(f.Kind, f.Method, f.Template, (long)f.Requests, f.LastSeen?.ToDateTimeOffset()))]);
            if (parse.GetValue(Ztmctl.OutputOption) == "json")
            {
                Console.WriteLine(JsonSerializer.Serialize(output, ApiJson.Default.DiffOutput));
                return 0;
            }
            Console.WriteLine($"{output.Service} against ApiSpec {output.ApiSpec} ({output.DeclaredOperations} declared operation(s))");
            Console.WriteLine($"{"KIND",-7} {"METHOD",-7} {"TEMPLATE",-40} {"REQUESTS",8}  LAST SEEN");
            foreach (var f in output.Findings)
            {
                Console.WriteLine($"{f.Kind,-7} {f.Method,-7} {f.Template,-40} {f.Requests,8}  {Time(f.LastSeen)}");
            }
            var counts = output.Findings.GroupBy(f => f.Kind).ToDictionary(g => g.Key, g => g.Count());
            Console.WriteLine($"{counts.GetValueOrDefault("shadow")} shadow, {counts.GetValueOrDefault("zombie")} zombie, "
                + (output.UnusedKnown
                    ? $"{counts.GetValueOrDefault("unused")} unused (not called for {Duration(output.UnusedAfterSeconds)})"
                    : $"unused not known yet (observed for less than {Duration(output.UnusedAfterSeconds)}: --api-unused-after)"));
            return 0;
        }, cancellation));
        return command;
    }

    private static Command Skeleton()
    {
        var service = ServiceOption(required: true);
        var file = new Option<string?>("--file", "-f") { Description = "Write the document here (default: stdout)" };
        var command = new Command("skeleton", "An OpenAPI 3.1 document (JSON) of what was observed, to start a spec from for a service without one") { service, file };
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var response = await new ApiAdmin.ApiAdminClient(channel).SkeletonAsync(new ApiSkeletonRequest { Service = parse.GetValue(service)! },
                deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct);
            if (parse.GetValue(file) is { } path)
            {
                try
                {
                    await File.WriteAllTextAsync(path, response.Document + "\n", ct);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    return Ztmctl.Fail(Ztmctl.Refused, $"cannot write {path}: {e.Message}");
                }
                Console.Error.WriteLine($"wrote {path}");
                return 0;
            }
            Console.WriteLine(response.Document);
            return 0;
        }, cancellation));
        return command;
    }

    private static string Time(DateTimeOffset? at) => at is { } t ? t.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) : "never";

    private static string Duration(long seconds) => ZeroTrustMesh.Identity.Durations.Format(TimeSpan.FromSeconds(seconds));
}

internal sealed record InventoryOutput(IReadOnlyList<ServiceOutput> Services, long ServicesOverCap);

internal sealed record ServiceOutput(string Service, DateTimeOffset? ObservingSince, long Requests, long Refused, long NotFound, long OverCap, int MaxPaths,
    IReadOnlyList<string> Pins, IReadOnlyList<EndpointOutput> Endpoints);

internal sealed record EndpointOutput(string Method, string Template, long Requests, DateTimeOffset FirstSeen, DateTimeOffset LastSeen,
    IReadOnlyList<string> Callers, bool CallersCapped, IReadOnlyDictionary<string, long> StatusClasses, IReadOnlyList<CallerOutput> Evidence, long UnattributedRequests);

internal sealed record CallerOutput(string Caller, long Requests, DateTimeOffset FirstSeen, DateTimeOffset LastSeen);

internal sealed record DiffOutput(string Service, string ApiSpec, int DeclaredOperations, long UnusedAfterSeconds, bool UnusedKnown, IReadOnlyList<FindingOutput> Findings);

internal sealed record FindingOutput(string Kind, string Method, string Template, long Requests, DateTimeOffset? LastSeen);

[JsonSerializable(typeof(InventoryOutput))]
[JsonSerializable(typeof(DiffOutput))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
internal sealed partial class ApiJson : JsonSerializerContext;
