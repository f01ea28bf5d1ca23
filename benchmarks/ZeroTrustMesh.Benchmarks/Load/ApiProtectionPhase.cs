using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using ZeroTrustMesh.Policy.Tests.ApiSpec;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// What the API protection phase measured: per repetition, the sidecar pair to a workload with an ApiSpec against the
/// same request to one without, then median (min..max) over the repetitions; <see cref="Verified"/> says what was
/// checked before measuring (that validation and redaction were in force).
/// </summary>
internal sealed record ApiProtectionJson(int BodyBytes, int ResponseBytes, int RedactedResponseBytes, string Verified,
    Stat ValidationOffP99Ms, Stat ValidationOnP99Ms, Stat ValidationAddedP50Ms, Stat ValidationAddedP99Ms,
    Stat RedactionOffP50Ms, Stat RedactionOnP50Ms, Stat RedactionAddedP50Ms, Stat RedactionAddedP99Ms,
    Stat NoApiSpecP99Ms, Stat NoApiSpecAbsentP99Ms, Stat NoApiSpecAddedP99Ms, double NoApiSpecSpreadMs,
    Stat ArmsApartP50Ms, Stat ArmsApartP99Ms, Stat ValidationNetP99Ms);

/// <summary>
/// The API protection phase of <c>dataplane-load</c> (issue 18), after every other phase so that the latency phase
/// ran with no ApiSpec in the mesh:
/// 1. applies an ApiSpec (Enforce) to a third workload, <c>catalog</c> — its sidecar in front of the same demo app as
///    <c>orders</c> — whose OpenAPI document declares <c>POST /api/orders</c> with a JSON body schema (<c>$ref</c>s,
///    nested objects, an array of lines) and <c>GET /json/{size}</c> whose 200 response is redacted (remove
///    <c>/users/*/password</c>, mask <c>/users/*/ssn</c>), and allows the frontend these calls on both workloads;
/// 2. starts the catalog sidecar and checks, through the frontend, that an invalid body is refused with 400 and a
///    redacted page has no password, while orders passes both untouched — so the phase cannot measure a mesh that
///    does not validate or redact;
/// 3. per repetition, open loop at the run's rate with the two routes alternating request by request (rate/2 each,
///    for twice the duration): a 4 KiB JSON POST to orders (validation off) and to catalog (on); then the 64 KiB JSON
///    page from orders (not redacted) and from catalog (redacted); then, alone,
///    <c>GET /bytes/1024</c> to orders, the latency phase's request to a workload without an ApiSpec, with catalog's
///    ApiSpec in the mesh; then catalog's ApiSpec is deleted (and seen gone: catalog passes the invalid body) and the
///    same <c>GET /bytes/1024</c> to orders runs again with no ApiSpec in the mesh, before the ApiSpec is applied again
///    (and seen in force) for the next repetition. "Pays nothing" is that same-phase A/B, against its own spread over
///    the repetitions. Added latency is taken per repetition between runs of the same round;
/// 4. with no ApiSpec in the mesh, the validation pair once more (the same POST to orders and to catalog, alternating):
///    what the two arms differ by without validation — two sidecar processes, two routes through the frontend — so that
///    validation's own cost, catalog with its ApiSpec against catalog without, each beside orders in the same loop, can
///    be told from the arms' difference.
/// </summary>
internal static class ApiProtectionPhase
{
    public const string Phase = "api";
    public const string ValidationOff = "apispec-none-post";
    public const string ValidationOn = "apispec-validate-post";
    public const string RedactionOff = "apispec-none-json";
    public const string RedactionOn = "apispec-redact-json";
    public const string NoApiSpec = "apispec-none-bytes";
    public const string NoApiSpecAbsent = "apispec-absent-bytes";
    public const string ArmsApartOrders = "apispec-absent-post-orders";
    public const string ArmsApartCatalog = "apispec-absent-post-catalog";

    private const string Service = "catalog";
    private const string ApiSpecName = "catalog-api";
    private const string ValidatedPath = "/api/orders";
    private const int ResponseSize = 64 * 1024;
    private static readonly string RedactedPath = $"/json/{ResponseSize}";

    /// <summary>What the phase needs of the run: the mesh, the app, the frontend's outbound entry, and the run's own helpers.</summary>
    public sealed record Context(ControlPlaneProcess ControlPlane, string Root, IReadOnlyDictionary<string, string> SidecarEnvironment, string AppPort,
        IPEndPoint Outbound, LoadProcess Frontend, LoadProcess Orders, Func<LoadProcess, LoadProcess> Track, HttpClient Client);

    public static async Task<(List<RunJson> Runs, ApiProtectionJson Figures)> RunAsync(DataPlaneSettings settings, Context context,
        TimeSpan startTimeout, CancellationToken cancellation)
    {
        await MeshSetup.ApplyAsync(context.ControlPlane, "benchmark-api-allow.yaml", AllowPolicy(), cancellation);
        await MeshSetup.ApplyAsync(context.ControlPlane, "benchmark-apispec.yaml", ApiSpecPolicy(), cancellation);
        var catalog = context.Track(await MeshSetup.StartSidecarAsync("catalog-sidecar", Service, settings.Sidecar, context.ControlPlane, context.Root,
            context.SidecarEnvironment, cancellation, "--app-port", context.AppPort));
        await catalog.WaitForLineAsync("registered with the control plane", startTimeout);
        catalog.Quiet();

        var body = BookOrder.Body(valid: true);
        var entry = new Uri($"http://{context.Outbound}");
        Target To(string name, string host, string path, LoadProcess server) =>
            new(name, $"client → frontend sidecar outbound (Host: {host}) → mTLS HTTP/2 → {server.Name} → demo app {path}", new Uri(entry, path), host,
                [context.Frontend, server], context.Client);
        var validationOff = To(ValidationOff, DataPlaneLoad.ServiceHost, ValidatedPath, context.Orders);
        var validationOn = To(ValidationOn, Service, ValidatedPath, catalog);
        var redactionOff = To(RedactionOff, DataPlaneLoad.ServiceHost, RedactedPath, context.Orders);
        var redactionOn = To(RedactionOn, Service, RedactedPath, catalog);
        var noApiSpec = To(NoApiSpec, DataPlaneLoad.ServiceHost, DataPlaneLoad.PathAndQuery, context.Orders);
        var noApiSpecAbsent = To(NoApiSpecAbsent, DataPlaneLoad.ServiceHost, DataPlaneLoad.PathAndQuery, context.Orders);
        var armsApartOrders = To(ArmsApartOrders, DataPlaneLoad.ServiceHost, ValidatedPath, context.Orders);
        var armsApartCatalog = To(ArmsApartCatalog, Service, ValidatedPath, catalog);

        // In force before anything is measured: catalog refuses an invalid body and redacts; orders does neither.
        var invalid = BookOrder.Body(valid: false);
        await ExpectAsync(context.Client, validationOn, invalid, HttpStatusCode.BadRequest, startTimeout, cancellation);
        await ExpectAsync(context.Client, validationOn, body, HttpStatusCode.OK, startTimeout, cancellation);
        await ExpectAsync(context.Client, validationOff, invalid, HttpStatusCode.OK, startTimeout, cancellation);
        var plain = await ExpectAsync(context.Client, redactionOff, null, HttpStatusCode.OK, startTimeout, cancellation);
        var redacted = await ExpectAsync(context.Client, redactionOn, null, HttpStatusCode.OK, startTimeout, cancellation);
        if (!plain.Contains("\"password\"", StringComparison.Ordinal) || redacted.Contains("\"password\"", StringComparison.Ordinal) || !redacted.Contains("\"****\"", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"the ApiSpec's redaction is not in force: orders' page has a password: {plain.Contains("\"password\"", StringComparison.Ordinal)}, catalog's page has none and masked SSNs: {!redacted.Contains("\"password\"", StringComparison.Ordinal) && redacted.Contains("\"****\"", StringComparison.Ordinal)}");
        }
        var verified = $"catalog refused an invalid body with 400 and passed a valid one; orders passed the invalid body (no ApiSpec); catalog's {Encoding.UTF8.GetByteCount(plain):N0}-byte page came back as {Encoding.UTF8.GetByteCount(redacted):N0} bytes without passwords and with masked SSNs";
        DataPlaneLoad.Log($"api phase: {verified}");

        var runs = new List<RunJson>();
        var client = $"open loop {settings.Rate}/s";
        for (var rep = 1; rep <= settings.Repetitions; rep++)
        {
            if (rep > 1)
            {
                await MeshSetup.ApplyAsync(context.ControlPlane, "benchmark-apispec.yaml", ApiSpecPolicy(), cancellation);
                await ExpectAsync(context.Client, validationOn, invalid, HttpStatusCode.BadRequest, startTimeout, cancellation);
            }
            runs.AddRange(await MeasurePairedAsync(rep, validationOff, validationOn, ", POST 4 KiB JSON", body));
            runs.AddRange(await MeasurePairedAsync(rep, redactionOff, redactionOn, ", GET 64 KiB JSON", null));
            runs.Add(await MeasureAsync(rep, noApiSpec, client + ", catalog's ApiSpec in the mesh", null));
            // The A/B's other half: the same request, the same phase, no ApiSpec anywhere in the mesh.
            await MeshSetup.DeleteAsync(context.ControlPlane, "ApiSpec", ApiSpecName, cancellation);
            await ExpectAsync(context.Client, validationOn, invalid, HttpStatusCode.OK, startTimeout, cancellation);
            runs.Add(await MeasureAsync(rep, noApiSpecAbsent, client + ", no ApiSpec in the mesh", null));
            runs.AddRange(await MeasurePairedAsync(rep, armsApartOrders, armsApartCatalog, ", POST 4 KiB JSON, no ApiSpec in the mesh", body));
        }
        return (runs, Summarize(runs, body.Length, Encoding.UTF8.GetByteCount(plain), Encoding.UTF8.GetByteCount(redacted), verified));

        Task<RunJson> MeasureAsync(int rep, Target target, string what, byte[]? json) =>
            DataPlaneRun.MeasureAsync(rep, Phase, target, target.Proxies, what, () =>
                LoadClients.FixedRateAsync(target.Client, target.Url, target.Host, settings.Rate, settings.Warmup, settings.RateDuration, cancellation, json));

        // Without the ApiSpec and with it, request by request in one open loop (rate/2 each, twice as long: as many
        // samples per route as a run of its own): the two routes live through the same moments of the machine, so
        // their difference is the ApiSpec's cost and not the difference between two runs (3 ms of p99 apart here).
        async Task<RunJson[]> MeasurePairedAsync(int rep, Target off, Target on, string what, byte[]? json)
        {
            ClientResult[] arms = [];
            var both = off with { Name = $"{off.Name}+{on.Name}", Proxies = [.. off.Proxies.Union(on.Proxies)] };
            var run = await DataPlaneRun.MeasureAsync(rep, Phase, both, both.Proxies, $"{client} alternating with {on.Name}{what}", async () =>
            {
                arms = await LoadClients.FixedRateAsync(context.Client, [new RateArm(off.Url, off.Host, json), new RateArm(on.Url, on.Host, json)],
                    settings.Rate, settings.Warmup, settings.PairedApiDuration, cancellation);
                return arms.Length == 2 ? arms[0] with { Requests = arms[0].Requests + arms[1].Requests, Errors = arms[0].Errors + arms[1].Errors, Sent = arms[0].Sent + arms[1].Sent } : arms[0];
            });
            return arms.Length == 2
                ? [run with { Target = off.Name, Result = arms[0] }, run with { Target = on.Name, Result = arms[1] }]
                : [run];
        }
    }

    private static ApiProtectionJson Summarize(List<RunJson> runs, int bodyBytes, int responseBytes, int redactedBytes, string verified)
    {
        RunJson? Find(List<RunJson> from, int rep, string target) => from.FirstOrDefault(r => r.Repetition == rep && r.Target == target);
        var reps = runs.Select(r => r.Repetition).Distinct().Order().ToList();
        Stat Over(string target, Func<ClientResult, double> figure) => Stat.Of(runs.Where(r => r.Target == target).Select(r => figure(r.Result)));
        Stat Added(string on, string off, Func<ClientResult, double> figure) => Stat.Of(reps.Select(rep =>
            Find(runs, rep, on) is { } a && Find(runs, rep, off) is { } b ? figure(a.Result) - figure(b.Result) : double.NaN));
        Stat Net(Func<ClientResult, double> figure) => Stat.Of(reps.Select(rep =>
            Find(runs, rep, ValidationOn) is { } on && Find(runs, rep, ValidationOff) is { } off && Find(runs, rep, ArmsApartCatalog) is { } c && Find(runs, rep, ArmsApartOrders) is { } o
                ? figure(on.Result) - figure(off.Result) - (figure(c.Result) - figure(o.Result)) : double.NaN));
        var withP99 = Over(NoApiSpec, r => r.P99Ms);
        var absentP99 = Over(NoApiSpecAbsent, r => r.P99Ms);
        return new ApiProtectionJson(bodyBytes, responseBytes, redactedBytes, verified,
            Over(ValidationOff, r => r.P99Ms), Over(ValidationOn, r => r.P99Ms), Added(ValidationOn, ValidationOff, r => r.P50Ms), Added(ValidationOn, ValidationOff, r => r.P99Ms),
            Over(RedactionOff, r => r.P50Ms), Over(RedactionOn, r => r.P50Ms), Added(RedactionOn, RedactionOff, r => r.P50Ms), Added(RedactionOn, RedactionOff, r => r.P99Ms),
            withP99, absentP99, Added(NoApiSpec, NoApiSpecAbsent, r => r.P99Ms),
            withP99.N == 0 || absentP99.N == 0 ? double.NaN : Math.Max(withP99.Max - withP99.Min, absentP99.Max - absentP99.Min),
            Added(ArmsApartCatalog, ArmsApartOrders, r => r.P50Ms), Added(ArmsApartCatalog, ArmsApartOrders, r => r.P99Ms), Net(r => r.P99Ms));
    }

    /// <summary>Issue 18's targets, met or not.</summary>
    public static IEnumerable<CheckJson> Checks(ApiProtectionJson? api, int rate)
    {
        if (api is null)
        {
            yield break;
        }
        var inv = CultureInfo.InvariantCulture;
        yield return new($"ApiSpec validation of a 4 KiB JSON body: added p99 ≤ +0.2 ms at {rate} req/s", "issue 18", api.ValidationAddedP99Ms.Format("+0.000;-0.000") + " ms",
            api.ValidationAddedP99Ms.Median <= 0.2, Spare(api.ValidationAddedP99Ms.Median, 0.2));
        yield return new("ApiSpec redaction of a 64 KiB JSON response: added median ≤ 0.3 ms", "issue 18", api.RedactionAddedP50Ms.Format("+0.000;-0.000") + " ms",
            api.RedactionAddedP50Ms.Median <= 0.3, Spare(api.RedactionAddedP50Ms.Median, 0.3));
        yield return new("a workload without an ApiSpec pays nothing measurable (p99 with and without an ApiSpec in the mesh, same phase, within the runs' spread)", "issue 18",
            string.Create(inv, $"{api.NoApiSpecAddedP99Ms.Format("+0.000;-0.000")} ms against a spread of {api.NoApiSpecSpreadMs:0.000} ms"),
            Math.Abs(api.NoApiSpecAddedP99Ms.Median) <= api.NoApiSpecSpreadMs,
            string.Create(inv, $"{api.NoApiSpecSpreadMs - Math.Abs(api.NoApiSpecAddedP99Ms.Median):+0.000;-0.000} ms"));
    }

    private static string Spare(double value, double limit) => value <= limit
        ? string.Create(CultureInfo.InvariantCulture, $"{limit - value:0.000} ms to spare")
        : string.Create(CultureInfo.InvariantCulture, $"over by {value - limit:0.000} ms");

    public static void AppendSection(StringBuilder md, DataPlaneReport report)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine("## API protection (ApiSpec)");
        md.AppendLine();
        if (report.ApiProtection is not { } api)
        {
            md.AppendLine("Not measured.");
            return;
        }
        md.AppendLine(inv, $"After every other phase (the latency phase ran with no ApiSpec in the mesh), an ApiSpec in Enforce mode is applied to a third workload, `catalog` (its own sidecar in front of the same demo app), and the frontend sidecar calls `orders` (no ApiSpec) and `catalog` alternately, request by request, in one open loop at {report.Settings.Rate} req/s ({report.Settings.Rate / 2} req/s each) for {report.Settings.ApiPairedSeconds:0.#} s after {report.Settings.WarmupSeconds:0.#} s unmeasured, so that both routes live through the same moments of this shared machine (runs one after the other differ by more than the cost measured): a {api.BodyBytes:N0}-byte JSON `POST /api/orders` whose body catalog validates against the document's schema (`$ref`s, nested objects, an array of lines), and the demo app's {api.ResponseBytes:N0}-byte JSON page of users `GET /json/65536` that catalog redacts (remove `/users/*/password`, mask `/users/*/ssn`: {api.RedactedResponseBytes:N0} bytes out). Added = catalog − orders, per repetition. Checked before measuring: {api.Verified}.");
        md.AppendLine();
        md.AppendLine("| figure | no ApiSpec (orders) | ApiSpec (catalog) | added |");
        md.AppendLine("|---|---:|---:|---:|");
        md.AppendLine(inv, $"| 4 KiB JSON POST validated, p99 ms | {api.ValidationOffP99Ms.Format("0.000")} | {api.ValidationOnP99Ms.Format("0.000")} | {api.ValidationAddedP99Ms.Format("+0.000;-0.000")} (p50 {api.ValidationAddedP50Ms.Format("+0.000;-0.000")}) |");
        md.AppendLine(inv, $"| the same POST with no ApiSpec in the mesh (the arms apart), p99 ms | | | {api.ArmsApartP99Ms.Format("+0.000;-0.000")} (p50 {api.ArmsApartP50Ms.Format("+0.000;-0.000")}) |");
        md.AppendLine(inv, $"| validation net of the arms apart (catalog with − without its ApiSpec, each beside orders), p99 ms | | | {api.ValidationNetP99Ms.Format("+0.000;-0.000")} |");
        md.AppendLine(inv, $"| 64 KiB JSON response redacted, median ms | {api.RedactionOffP50Ms.Format("0.000")} | {api.RedactionOnP50Ms.Format("0.000")} | {api.RedactionAddedP50Ms.Format("+0.000;-0.000")} (p99 {api.RedactionAddedP99Ms.Format("+0.000;-0.000")}) |");
        md.AppendLine();
        md.AppendLine(inv, $"A workload without an ApiSpec, same phase A/B: `GET /bytes/1024` to orders, p99 {api.NoApiSpecP99Ms.Format("0.000")} ms with catalog's ApiSpec in the mesh against {api.NoApiSpecAbsentP99Ms.Format("0.000")} ms right after it was deleted, in the same repetition (difference per repetition {api.NoApiSpecAddedP99Ms.Format("+0.000;-0.000")} ms; the runs' own spread, the larger max − min over the repetitions of the two, {api.NoApiSpecSpreadMs.ToString("0.000", inv)} ms). BenchmarkDotNet measures the two costs alone: `ValidationBenchmarks` and `RedactionBenchmarks` (benchmarks/README.md).");
    }

    /// <summary>Sends one request and waits (bounded) until it answers <paramref name="expected"/>: the catalog sidecar may need a moment for its config and the frontend for the registry.</summary>
    private static async Task<string> ExpectAsync(HttpClient client, Target target, byte[]? json, HttpStatusCode expected, TimeSpan timeout, CancellationToken cancellation)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        var last = "no attempt";
        while (Stopwatch.GetTimestamp() < deadline)
        {
            using var request = new HttpRequestMessage(json is null ? HttpMethod.Get : HttpMethod.Post, target.Url);
            request.Headers.Host = target.Host;
            if (json is not null)
            {
                request.Content = new ByteArrayContent(json) { Headers = { ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json") } };
            }
            try
            {
                using var response = await client.SendAsync(request, cancellation);
                var text = await response.Content.ReadAsStringAsync(cancellation);
                if (response.StatusCode == expected)
                {
                    return text;
                }
                last = $"HTTP {(int)response.StatusCode}: {text[..Math.Min(text.Length, 300)]}";
            }
            catch (HttpRequestException e)
            {
                last = e.Message;
            }
            await Task.Delay(100, cancellation);
        }
        throw new InvalidOperationException($"{target.Name}: {(json is null ? "GET" : "POST")} {target.Url.AbsolutePath} (Host: {target.Host}) did not answer {(int)expected} within {timeout.TotalSeconds} s: {last}");
    }

    /// <summary>The phase's authorization: the frontend may make the measured calls on orders and catalog.</summary>
    private static string AllowPolicy() => string.Join("---\n", new[] { DataPlaneLoad.ServiceHost, Service }.Select(service => $$$"""
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata: {name: {{{service}}}-api-phase, namespace: {{{MeshSetup.Namespace}}} }
            spec:
              selector: {service: {{{service}}} }
              action: ALLOW
              rules:
                - from: [{source: {principals: ["spiffe://cluster.local/ns/{{{MeshSetup.Namespace}}}/sa/frontend"]}}]
                  to:
                    - operation: {methods: ["POST"], paths: ["{{{ValidatedPath}}}"]}
                    - operation: {methods: ["GET"], paths: ["{{{RedactedPath}}}", "{{{DataPlaneLoad.PathAndQuery}}}"]}

            """));

    /// <summary>Catalog's ApiSpec, applied on its own so that the A/B can delete it and apply it again.</summary>
    private static string ApiSpecPolicy()
    {
        var document = string.Join("\n", OpenApi.Split('\n').Select(line => "      " + line));
        return $$$"""
            apiVersion: security.ztm.dev/v1
            kind: ApiSpec
            metadata: {name: {{{ApiSpecName}}}, namespace: {{{MeshSetup.Namespace}}} }
            spec:
              selector: {service: {{{Service}}} }
              mode: Enforce
              unknownOperations: Allow
              maxBodyBytes: 65536
              redaction:
                - operations: [listUsers]
                  status: "200"
                  remove: [/users/*/password]
                  mask: [/users/*/ssn]
              openapi:
                inline: |

            """ + document + "\n";
    }

    /// <summary>The catalog's OpenAPI 3.1 document: the order body of <c>ValidationBenchmarks</c>, and the page of users.</summary>
    private const string OpenApi = """
        openapi: 3.1.0
        info: {title: dataplane-load catalog, version: "1"}
        paths:
          /api/orders:
            post:
              operationId: createOrder
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {$ref: '#/components/schemas/NewOrder'}
              responses:
                "200": {description: the order as the app saw it}
          /json/{size}:
            get:
              operationId: listUsers
              parameters:
                - {name: size, in: path, required: true, schema: {type: integer, minimum: 0}}
              responses:
                "200":
                  description: a page of users
                  content:
                    application/json:
                      schema: {type: object}
        components:
          schemas:
            NewOrder:
              type: object
              additionalProperties: false
              required: [bookId, quantity, shipping, lines]
              properties:
                bookId: {type: integer, minimum: 1}
                quantity: {type: integer, minimum: 1, exclusiveMaximum: 10}
                note: {type: [string, "null"], maxLength: 200}
                shipping: {$ref: '#/components/schemas/Address'}
                lines: {type: array, items: {$ref: '#/components/schemas/Line'}}
            Address:
              type: object
              required: [street, city]
              properties:
                street: {type: string, minLength: 1}
                city: {type: string, minLength: 1}
            Line:
              type: object
              required: [bookId, quantity]
              properties:
                bookId: {type: integer, minimum: 1}
                quantity: {type: integer, minimum: 1}
                title: {type: string}
        """;
}
