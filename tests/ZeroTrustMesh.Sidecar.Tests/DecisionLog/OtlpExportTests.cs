using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Channels;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Proto.Collector.Logs.V1;
using OpenTelemetry.Proto.Logs.V1;
using Prometheus;
using ZeroTrustMesh.DecisionLog;
using ZeroTrustMesh.Sidecar.DecisionLog;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Tests.DecisionLog;

/// <summary>
/// The decision log's OTLP export against a real OTLP/HTTP receiver (Kestrel on 127.0.0.1:0, decoding each request with
/// opentelemetry-proto's messages): what a record carries, batching, retries, and what is dropped and counted when the
/// collector is down, slow to accept or refuses.
/// </summary>
public sealed class OtlpExportTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly DateTimeOffset Noon = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task A_full_batch_arrives_as_one_request_with_every_attribute_naming_the_record_in_the_chain()
    {
        await using var collector = await Collector.StartAsync();
        await using var export = Export(collector.Endpoint, s => s with { MaxBatch = 3, BatchDelay = TimeSpan.FromMinutes(5) });
        export.Exporter.Start();

        export.Exporter.Offer(new Decision(Noon, "spiffe://cluster.local/ns/shop/sa/frontend", "GET", "/orders/7", 8080, 200, true, "shop/orders-read", 1, null), "c0ffee", 41, "aa11");
        export.Exporter.Offer(new Decision(Noon.AddSeconds(1), "plaintext", "POST", "/admin", 8080, 403, false, null, -1, "no ALLOW policy matched"), "c0ffee", 42, "bb22");
        export.Exporter.OfferGap(Noon.AddSeconds(2), "c0ffee", 43, "cc33", 17);

        var request = await collector.Requests.ReadAsync().AsTask().WaitAsync(Timeout);
        var records = request.ResourceLogs.Single().ScopeLogs.Single().LogRecords;
        Assert.Equal(3, records.Count);
        Assert.Equal("ztm.decision_log", request.ResourceLogs[0].ScopeLogs[0].Scope.Name);
        Assert.Contains(request.ResourceLogs[0].Resource.Attributes, a => a.Key == "service.name" && a.Value.StringValue == "ztm-sidecar");

        var allowed = records[0];
        Assert.Equal("ztm.decision", allowed.EventName);
        Assert.Equal(SeverityNumber.Info, allowed.SeverityNumber);
        Assert.Equal((ulong)Noon.ToUnixTimeMilliseconds() * 1_000_000, allowed.TimeUnixNano);
        Assert.Equal("GET /orders/7 200 allow", allowed.Body.StringValue);
        Assert.Equal(
            "ztm.caller=spiffe://cluster.local/ns/shop/sa/frontend http.request.method=GET url.path=/orders/7 server.port=8080 http.response.status_code=200 " +
            "ztm.decision=allow ztm.policy=shop/orders-read ztm.rule=1 ztm.decision_log.chain=c0ffee ztm.decision_log.sequence=41 ztm.decision_log.hash=aa11",
            Attributes(allowed));

        var denied = records[1];
        Assert.Equal(SeverityNumber.Warn, denied.SeverityNumber);
        Assert.Equal(
            "ztm.caller=plaintext http.request.method=POST url.path=/admin server.port=8080 http.response.status_code=403 " +
            "ztm.decision=deny ztm.reason=no ALLOW policy matched ztm.decision_log.chain=c0ffee ztm.decision_log.sequence=42 ztm.decision_log.hash=bb22",
            Attributes(denied));

        var gap = records[2];
        Assert.Equal("ztm.decision_log.gap", gap.EventName);
        Assert.Equal("ztm.decision_log.lost=17 ztm.decision_log.chain=c0ffee ztm.decision_log.sequence=43 ztm.decision_log.hash=cc33", Attributes(gap));

        Assert.Equal(1, collector.Posts);
        await WaitForAsync(export.Exporter, () => export.Exporter.Sent == 3);
        Assert.Contains("ztm_decision_log_exported_total 3", await export.MetricsAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_batch_that_does_not_fill_is_sent_after_the_batch_delay_and_the_stop_sends_what_is_left()
    {
        await using var collector = await Collector.StartAsync();
        var exporter = Export(collector.Endpoint, s => s with { MaxBatch = 100, BatchDelay = TimeSpan.FromMilliseconds(50) });
        await using (exporter)
        {
            exporter.Exporter.Start();
            exporter.Exporter.Offer(Allowed(1), "c", 1, "h1");
            var first = await collector.Requests.ReadAsync().AsTask().WaitAsync(Timeout);
            Assert.Single(first.ResourceLogs[0].ScopeLogs[0].LogRecords);

            exporter.Exporter.Offer(Allowed(2), "c", 2, "h2");
            exporter.Exporter.Offer(Allowed(3), "c", 3, "h3");
            await exporter.Exporter.StopAsync(CancellationToken.None);
        }
        var sequences = new List<long>();
        while (collector.Requests.TryRead(out var request))
        {
            sequences.AddRange(request.ResourceLogs[0].ScopeLogs[0].LogRecords.Select(Sequence));
        }
        Assert.Equal([2L, 3L], sequences);
        Assert.Equal(0, exporter.Exporter.Dropped);
    }

    [Fact]
    public async Task A_collector_that_is_down_costs_the_offer_nothing_and_every_record_it_misses_is_counted()
    {
        var closed = ClosedPort();
        await using var export = Export(new Uri($"http://127.0.0.1:{closed}/v1/logs"), s => s with
        {
            QueueLength = 4,
            MaxBatch = 2,
            BatchDelay = TimeSpan.FromMilliseconds(10),
            Attempts = 3,
            FirstBackoff = TimeSpan.FromMilliseconds(20),
        });
        export.Exporter.Start();

        // Offering never waits on the collector: 50 records are taken (or dropped) at once.
        for (var i = 1; i <= 50; i++)
        {
            export.Exporter.Offer(Allowed(i), "c", i, "h");
        }
        await WaitForAsync(export.Exporter, () => export.Exporter.Dropped == 50);
        Assert.Equal(0, export.Exporter.Sent);
        var metrics = await export.MetricsAsync();
        var queueFull = Counter(metrics, "queue_full");
        var unreachable = Counter(metrics, "collector_unreachable");
        Assert.True(queueFull > 0, metrics);
        Assert.True(unreachable > 0, metrics);
        Assert.Equal(50, queueFull + unreachable);
        Assert.Contains(export.Logs, l => l.Contains("failing (", StringComparison.Ordinal) && l.Contains("retrying in", StringComparison.Ordinal));
        Assert.Contains(export.Logs, l => l.Contains("record(s) dropped after 3 attempt(s)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_collector_that_asks_to_retry_gets_the_same_batch_again_and_nothing_is_lost()
    {
        await using var collector = await Collector.StartAsync(answers: [503, 429]);
        await using var export = Export(collector.Endpoint, s => s with { MaxBatch = 2, BatchDelay = TimeSpan.FromMinutes(5), FirstBackoff = TimeSpan.FromMilliseconds(10) });
        export.Exporter.Start();
        export.Exporter.Offer(Allowed(1), "c", 1, "h1");
        export.Exporter.Offer(Allowed(2), "c", 2, "h2");

        var delivered = await collector.Requests.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal([1L, 2L], delivered.ResourceLogs[0].ScopeLogs[0].LogRecords.Select(Sequence));
        Assert.Equal(3, collector.Posts); // 503, 429, then accepted
        await WaitForAsync(export.Exporter, () => export.Exporter.Sent == 2);
        Assert.Equal(0, export.Exporter.Dropped);
        Assert.Contains(export.Logs, l => l.Contains("works again", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_collector_that_refuses_a_batch_is_not_retried_and_the_records_are_counted()
    {
        await using var collector = await Collector.StartAsync(answers: [400]);
        await using var export = Export(collector.Endpoint, s => s with { MaxBatch = 2, BatchDelay = TimeSpan.FromMinutes(5), FirstBackoff = TimeSpan.FromMilliseconds(10) });
        export.Exporter.Start();
        export.Exporter.Offer(Allowed(1), "c", 1, "h1");
        export.Exporter.Offer(Allowed(2), "c", 2, "h2");

        await WaitForAsync(export.Exporter, () => export.Exporter.Dropped == 2);
        Assert.Equal(1, collector.Posts);
        Assert.Equal(2, Counter(await export.MetricsAsync(), "collector_refused"));
        Assert.Contains(export.Logs, l => l.Contains("refused 2 record(s) (HTTP 400", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Records_a_partial_success_rejects_are_counted_as_refused()
    {
        await using var collector = await Collector.StartAsync(rejected: 1);
        await using var export = Export(collector.Endpoint, s => s with { MaxBatch = 3, BatchDelay = TimeSpan.FromMinutes(5) });
        export.Exporter.Start();
        for (var i = 1; i <= 3; i++)
        {
            export.Exporter.Offer(Allowed(i), "c", i, "h");
        }
        await WaitForAsync(export.Exporter, () => export.Exporter.Sent + export.Exporter.Dropped == 3);
        Assert.Equal((2L, 1L), (export.Exporter.Sent, export.Exporter.Dropped));
        Assert.Contains(export.Logs, l => l.Contains("refused 1 record(s) (one record too old)", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("http://otel-collector:4318", "http://otel-collector:4318/v1/logs")]
    [InlineData("https://otel.example/", "https://otel.example/v1/logs")]
    [InlineData("https://gateway.example/otlp/v1/logs", "https://gateway.example/otlp/v1/logs")]
    public void A_base_address_gets_the_OTLP_logs_path_and_a_full_one_is_kept(string text, string endpoint)
    {
        Assert.True(OtlpExportSettings.TryParse(text, out var settings, out var error), error);
        Assert.Equal(endpoint, settings!.Endpoint.ToString());
    }

    [Theory]
    [InlineData("otel-collector:4318")]
    [InlineData("grpc://otel-collector:4317")]
    [InlineData("/v1/logs")]
    [InlineData("http://collector:4318/v1/logs?x=1")]
    [InlineData("")]
    public void Anything_but_an_http_URL_is_refused_with_what_is_expected(string text)
    {
        Assert.False(OtlpExportSettings.TryParse(text, out var settings, out var error));
        Assert.Null(settings);
        Assert.Equal($"--decision-log-otlp '{text}' must be the http:// or https:// URL of an OTLP/HTTP collector, e.g. http://otel-collector:4318", error);
    }

    private static Decision Allowed(int i) => new(Noon.AddSeconds(i), "plaintext", "GET", $"/orders/{i}", 8080, 200, true, "shop/p", 0, null);

    private static long Sequence(LogRecord record) => record.Attributes.Single(a => a.Key == "ztm.decision_log.sequence").Value.IntValue;

    private static string Attributes(LogRecord record) => string.Join(' ', record.Attributes.Select(a => $"{a.Key}={(a.Value.ValueCase == OpenTelemetry.Proto.Common.V1.AnyValue.ValueOneofCase.IntValue ? a.Value.IntValue.ToString(System.Globalization.CultureInfo.InvariantCulture) : a.Value.StringValue)}"));

    private static long Counter(string metrics, string reason) =>
        metrics.Split('\n').Where(l => l.StartsWith($"ztm_decision_log_export_dropped_total{{reason=\"{reason}\"}} ", StringComparison.Ordinal))
            .Select(l => long.Parse(l.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture)).SingleOrDefault();

    private static int ClosedPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port; // closed again when disposed: connections are refused
    }

    /// <summary>Waits until the exporter's counts satisfy <paramref name="condition"/>, woken by each change; the timeout fails the test.</summary>
    private static async Task WaitForAsync(OtlpExport exporter, Func<bool> condition)
    {
        var met = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void Check()
        {
            if (condition())
            {
                met.TrySetResult();
            }
        }
        exporter.CountsChanged += Check;
        try
        {
            Check();
            await met.Task.WaitAsync(Timeout);
        }
        finally
        {
            exporter.CountsChanged -= Check;
        }
    }

    private static ExportUnderTest Export(Uri endpoint, Func<OtlpExportSettings, OtlpExportSettings> tune)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var root = new CertificateRequest("CN=unused bootstrap root", key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddHours(1));
        var options = new SidecarOptions
        {
            ControlPlane = new Uri("https://127.0.0.1:1"),
            BootstrapBundle = new ZeroTrustMesh.Identity.TrustBundle("cluster.local", [X509CertificateLoader.LoadCertificate(root.RawData)], 1),
            Proof = new IdentityProof.JoinToken("unused"),
            AdminPort = 0,
            InboundEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            OutboundPort = 0,
            AppPorts = [],
            TcpPorts = [],
            DecisionLog = new DecisionLogSettings("/unused", DecisionLogSettings.DefaultSegmentBytes, 10, TimeSpan.FromSeconds(10))
            {
                Export = tune(new OtlpExportSettings(endpoint)),
            },
        };
        var identity = new IdentityState(TimeProvider.System);
        var metrics = new SidecarMetrics(identity);
        var logs = new ListLogger();
        return new ExportUnderTest(new OtlpExport(options, identity, metrics, TimeProvider.System, logs), metrics, logs.Lines);
    }

    private sealed record ExportUnderTest(OtlpExport Exporter, SidecarMetrics Metrics, ConcurrentQueue<string> Logs) : IAsyncDisposable
    {
        public async Task<string> MetricsAsync()
        {
            using var stream = new MemoryStream();
            await Metrics.Registry.CollectAndExportAsTextAsync(stream);
            return System.Text.Encoding.UTF8.GetString(stream.ToArray());
        }

        public ValueTask DisposeAsync() => Exporter.DisposeAsync();
    }

    private sealed class ListLogger : ILogger<OtlpExport>
    {
        public ConcurrentQueue<string> Lines { get; } = new();

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Enqueue(formatter(state, exception));
    }

    /// <summary>An OTLP/HTTP logs receiver: decodes each POST to /v1/logs, answers the given statuses first, then 200.</summary>
    private sealed class Collector : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly Channel<ExportLogsServiceRequest> _requests = Channel.CreateUnbounded<ExportLogsServiceRequest>();
        private int _posts;

        private Collector(WebApplication app) => _app = app;

        public Uri Endpoint { get; private set; } = null!;

        public ChannelReader<ExportLogsServiceRequest> Requests => _requests.Reader;

        public int Posts => Volatile.Read(ref _posts);

        public static async Task<Collector> StartAsync(int[]? answers = null, int rejected = 0)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            var collector = new Collector(app);
            var pending = new ConcurrentQueue<int>(answers ?? []);
            app.MapPost("/v1/logs", async (HttpContext context) =>
            {
                Interlocked.Increment(ref collector._posts);
                Assert.Equal("application/x-protobuf", context.Request.ContentType);
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                if (pending.TryDequeue(out var status))
                {
                    context.Response.StatusCode = status;
                    if (status == 429)
                    {
                        context.Response.Headers.RetryAfter = "0";
                    }
                    return;
                }
                collector._requests.Writer.TryWrite(ExportLogsServiceRequest.Parser.ParseFrom(body.ToArray()));
                var answer = new ExportLogsServiceResponse();
                if (rejected > 0)
                {
                    answer.PartialSuccess = new ExportLogsPartialSuccess { RejectedLogRecords = rejected, ErrorMessage = "one record too old" };
                }
                context.Response.ContentType = "application/x-protobuf";
                await context.Response.Body.WriteAsync(answer.ToByteArray());
            });
            await app.StartAsync();
            collector.Endpoint = new Uri(new Uri(app.Urls.Single()), "/v1/logs");
            return collector;
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }
}
