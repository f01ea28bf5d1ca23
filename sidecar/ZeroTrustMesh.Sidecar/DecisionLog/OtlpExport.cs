using System.Net;
using System.Net.Http.Headers;
using System.Threading.Channels;
using Google.Protobuf;
using OpenTelemetry.Proto.Collector.Logs.V1;
using OpenTelemetry.Proto.Common.V1;
using OpenTelemetry.Proto.Logs.V1;
using OpenTelemetry.Proto.Resource.V1;
using ZeroTrustMesh.DecisionLog;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.DecisionLog;

/// <summary>
/// Where decision records are exported as OpenTelemetry logs (<c>--decision-log-otlp URL</c>), and how hard the export
/// tries. The knobs besides <see cref="Endpoint"/> are fixed for operators; tests shrink them.
/// </summary>
internal sealed record OtlpExportSettings(Uri Endpoint)
{
    /// <summary>Records waiting to be sent, at most; beyond it they are dropped and counted.</summary>
    public int QueueLength { get; init; } = 8192;

    /// <summary>Records in one request to the collector, at most.</summary>
    public int MaxBatch { get; init; } = 512;

    /// <summary>How long a batch that is not full waits for more records.</summary>
    public TimeSpan BatchDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Tries per batch before it is dropped and counted (the OTLP specification's retryable answers and connection failures).</summary>
    public int Attempts { get; init; } = 5;

    public TimeSpan FirstBackoff { get; init; } = TimeSpan.FromSeconds(1);

    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>One request to the collector, at most.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// An OTLP/HTTP collector's address: <c>http://collector:4318</c> (records go to <c>/v1/logs</c>, as the OTLP
    /// specification's base endpoint) or the full URL of its logs path when it has one (<c>…/otlp/v1/logs</c>).
    /// </summary>
    public static bool TryParse(string text, out OtlpExportSettings? settings, out string error)
    {
        settings = null;
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
            || string.IsNullOrEmpty(uri.Host) || uri.Query.Length > 0 || uri.Fragment.Length > 0)
        {
            error = $"--decision-log-otlp '{text}' must be the http:// or https:// URL of an OTLP/HTTP collector, e.g. http://otel-collector:4318";
            return false;
        }
        if (uri.AbsolutePath is "" or "/")
        {
            uri = new Uri(uri, "/v1/logs");
        }
        settings = new OtlpExportSettings(uri);
        error = "";
        return true;
    }
}

/// <summary>
/// Sends the decision log's records to an OpenTelemetry collector as OTLP logs (OTLP/HTTP, protobuf), each with its
/// chain, sequence number and hash so an exported record can be matched to the chain <c>ztmctl audit verify</c> proves.
/// Never on a request's path: the decision-log writer hands over records it has already chained.
/// 1. <see cref="Offer"/> puts the record in a bounded queue and returns; a full queue drops it and counts it
///    (<c>ztm_decision_log_export_dropped_total{reason="queue_full"}</c>).
/// 2. One sender takes up to <see cref="OtlpExportSettings.MaxBatch"/> records, waiting at most
///    <see cref="OtlpExportSettings.BatchDelay"/> for a batch to fill, and posts it.
/// 3. A connection failure, a timeout, 429, 502, 503 or 504 is retried with exponential backoff and jitter (or the
///    collector's Retry-After); after <see cref="OtlpExportSettings.Attempts"/> tries the batch is dropped and counted
///    (<c>collector_unreachable</c>); any other answer drops it at once (<c>collector_refused</c>), as does a partial
///    success for the records it rejects. Records waiting meanwhile stay in the queue.
/// The chain on disk stays the record of truth: the export is a copy for a central collector, and what it loses is counted.
/// </summary>
internal sealed class OtlpExport : IAsyncDisposable
{
    private const string ProtobufMediaType = "application/x-protobuf";

    /// <summary>The most of a collector's answer that is read (an ExportLogsServiceResponse is a few bytes).</summary>
    private const int MaxAnswerBytes = 64 * 1024;

    private readonly OtlpExportSettings _settings;
    private readonly Channel<Exported> _queue;
    private readonly HttpClient _http;
    private readonly IdentityState _identity;
    private readonly Telemetry.SidecarMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<OtlpExport> _logger;
    private readonly CancellationTokenSource _abort = new();
    private readonly CancellationTokenSource _stopping = new();
    private Task _sender = Task.CompletedTask;
    private long _sent;
    private long _dropped;
    private bool _failing;
    private int _disposed;

    /// <summary>Registered only when <c>--decision-log-otlp</c> is given: without it the sidecar has no exporter at all.</summary>
    public OtlpExport(SidecarOptions options, IdentityState identity, Telemetry.SidecarMetrics metrics, TimeProvider time, ILogger<OtlpExport> logger)
    {
        _settings = options.DecisionLog?.Export ?? throw new InvalidOperationException("the OTLP export is registered only with --decision-log-otlp");
        _identity = identity;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        // Wait mode, used only through TryWrite: a full queue refuses the write, so the drop is counted (DropWrite would
        // report the dropped record as written).
        _queue = Channel.CreateBounded<Exported>(new BoundedChannelOptions(_settings.QueueLength)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        // No proxy from the environment (an app's HTTP_PROXY may name this sidecar) and no redirects, as the sidecar's other clients.
        _http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            ConnectTimeout = _settings.RequestTimeout,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        })
        {
            Timeout = _settings.RequestTimeout,
            MaxResponseContentBufferSize = MaxAnswerBytes,
        };
    }

    /// <summary>Records the collector accepted.</summary>
    public long Sent => Interlocked.Read(ref _sent);

    /// <summary>Records not exported: the queue was full, or the collector could not be reached or refused them.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Raised after <see cref="Sent"/> or <see cref="Dropped"/> changed (tests wait on it instead of polling).</summary>
    internal event Action? CountsChanged;

    /// <summary>Queues a chained decision for export (its chain, sequence number and hash name it in the log on disk).</summary>
    public void Offer(in Decision decision, string chain, long sequence, string hash) => Offer(new Exported(decision, chain, sequence, hash, 0));

    /// <summary>Queues a gap record: <paramref name="lost"/> decisions the log itself could not write, at this place in the chain.</summary>
    public void OfferGap(DateTimeOffset time, string chain, long sequence, string hash, long lost) =>
        Offer(new Exported(new Decision { Time = time }, chain, sequence, hash, lost));

    private void Offer(Exported record)
    {
        if (!_queue.Writer.TryWrite(record))
        {
            Drop(1, "queue_full");
        }
    }

    public void Start() => _sender = Task.Run(SendLoopAsync, CancellationToken.None);

    /// <summary>
    /// Sends what is queued, each batch tried once more (a collector that is down does not hold the stop for the length
    /// of a backoff), until <paramref name="cancellationToken"/> says the stop cannot wait longer; the rest is dropped and counted.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync(); // ends a backoff at once
        _queue.Writer.TryComplete();
        await using (cancellationToken.Register(_abort.Cancel))
        {
            await _sender;
        }
    }

    private async Task SendLoopAsync()
    {
        var settings = _settings;
        var reader = _queue.Reader;
        var batch = new List<Exported>(settings.MaxBatch);
        while (await reader.WaitToReadAsync())
        {
            using (var linger = new CancellationTokenSource(settings.BatchDelay, _time))
            {
                while (batch.Count < settings.MaxBatch)
                {
                    if (reader.TryRead(out var record))
                    {
                        batch.Add(record);
                        continue;
                    }
                    try
                    {
                        if (!await reader.WaitToReadAsync(linger.Token))
                        {
                            break; // stopping: nothing more will come
                        }
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }
            }
            if (_abort.IsCancellationRequested)
            {
                Drop(batch.Count, "stopped");
            }
            else
            {
                await SendAsync(batch, settings);
            }
            batch.Clear();
        }
    }

    private async Task SendAsync(List<Exported> batch, OtlpExportSettings settings)
    {
        var body = Request(batch).ToByteArray();
        for (var attempt = 1; ; attempt++)
        {
            var (outcome, reason, retryAfter, rejected) = await PostAsync(body, settings);
            // Each outcome is logged before it is counted: whoever waits on the counts sees the log line too.
            if (outcome == Outcome.Accepted)
            {
                if (_failing)
                {
                    _failing = false;
                    SidecarLog.OtlpExportRecovered(_logger, settings.Endpoint.ToString());
                }
                if (rejected > 0)
                {
                    SidecarLog.OtlpExportRefused(_logger, settings.Endpoint.ToString(), rejected, reason);
                    Drop(rejected, "collector_refused");
                }
                Interlocked.Add(ref _sent, batch.Count - rejected);
                _metrics.DecisionLogExported(batch.Count - rejected);
                CountsChanged?.Invoke();
                return;
            }
            if (outcome == Outcome.Refused)
            {
                SidecarLog.OtlpExportRefused(_logger, settings.Endpoint.ToString(), batch.Count, reason);
                Drop(batch.Count, "collector_refused");
                return;
            }
            if (attempt >= settings.Attempts || _stopping.IsCancellationRequested || _abort.IsCancellationRequested)
            {
                SidecarLog.OtlpExportGaveUp(_logger, settings.Endpoint.ToString(), batch.Count, attempt, reason);
                Drop(batch.Count, "collector_unreachable");
                return;
            }
            var delay = retryAfter ?? Backoff(attempt, settings);
            if (!_failing)
            {
                _failing = true;
                SidecarLog.OtlpExportFailing(_logger, settings.Endpoint.ToString(), reason, delay.TotalSeconds);
            }
            try
            {
                await Task.Delay(delay, _time, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
                // stopping: one last try, then the batch is dropped and counted
            }
        }
    }

    /// <summary>Exponential from <see cref="OtlpExportSettings.FirstBackoff"/>, capped, with half of it random so sidecars that lost one collector do not return in step.</summary>
    private static TimeSpan Backoff(int attempt, OtlpExportSettings settings)
    {
        var ceiling = Math.Min(settings.MaxBackoff.TotalMilliseconds, settings.FirstBackoff.TotalMilliseconds * Math.Pow(2, attempt - 1));
        return TimeSpan.FromMilliseconds(ceiling / 2 + Random.Shared.NextDouble() * ceiling / 2);
    }

    private enum Outcome
    {
        Accepted,
        Retry,
        Refused,
    }

    private async Task<(Outcome Outcome, string Reason, TimeSpan? RetryAfter, int Rejected)> PostAsync(byte[] body, OtlpExportSettings settings)
    {
        try
        {
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue(ProtobufMediaType);
            using var response = await _http.PostAsync(settings.Endpoint, content, _abort.Token);
            if (response.IsSuccessStatusCode)
            {
                var answer = await response.Content.ReadAsByteArrayAsync(_abort.Token);
                var partial = answer.Length > 0 && response.Content.Headers.ContentType?.MediaType == ProtobufMediaType
                    ? ExportLogsServiceResponse.Parser.ParseFrom(answer).PartialSuccess : null;
                return (Outcome.Accepted, partial?.ErrorMessage ?? "", null, (int)Math.Min(partial?.RejectedLogRecords ?? 0, int.MaxValue));
            }
            var reason = $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}";
            var retryAfter = response.Headers.RetryAfter?.Delta is { } delta && delta <= settings.MaxBackoff ? delta : (TimeSpan?)null;
            return response.StatusCode is HttpStatusCode.TooManyRequests or HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout
                ? (Outcome.Retry, reason, retryAfter, 0)
                : (Outcome.Refused, reason, null, 0);
        }
        catch (HttpRequestException e)
        {
            return (Outcome.Retry, e.Message, null, 0);
        }
        catch (InvalidProtocolBufferException e)
        {
            return (Outcome.Accepted, $"unreadable answer: {e.Message}", null, 0); // it said 2xx: the records arrived
        }
        catch (OperationCanceledException) when (!_abort.IsCancellationRequested)
        {
            return (Outcome.Retry, $"no answer within {settings.RequestTimeout.TotalSeconds:0.#}s", null, 0);
        }
        catch (OperationCanceledException)
        {
            return (Outcome.Retry, "stopping", null, 0);
        }
    }

    private void Drop(int count, string reason)
    {
        if (count > 0)
        {
            Interlocked.Add(ref _dropped, count);
            _metrics.DecisionLogExportDropped(reason, count);
            CountsChanged?.Invoke();
        }
    }

    /// <summary>One OTLP request: the workload as the resource, the decision log as the scope, a log record per decision.</summary>
    private ExportLogsServiceRequest Request(List<Exported> batch)
    {
        var scope = new ScopeLogs { Scope = new InstrumentationScope { Name = "ztm.decision_log" } };
        var observed = Nanoseconds(_time.GetUtcNow());
        foreach (var record in batch)
        {
            scope.LogRecords.Add(LogRecordOf(record, observed));
        }
        var resource = new Resource();
        resource.Attributes.Add(Attribute("service.name", "ztm-sidecar"));
        if (_identity.Current?.Id.Value is { } workload)
        {
            resource.Attributes.Add(Attribute("ztm.workload", workload));
        }
        return new ExportLogsServiceRequest { ResourceLogs = { new ResourceLogs { Resource = resource, ScopeLogs = { scope } } } };
    }

    /// <summary>
    /// A decision as an OTLP log record: HTTP semantic-convention names where they exist, <c>ztm.*</c> for the rest, and
    /// <c>ztm.decision_log.{chain,sequence,hash}</c> naming the record in the chain.
    /// </summary>
    internal static LogRecord LogRecordOf(in Exported record, ulong observed)
    {
        var decision = record.Decision;
        var log = new LogRecord { TimeUnixNano = Nanoseconds(decision.Time), ObservedTimeUnixNano = observed };
        if (record.Lost > 0)
        {
            log.EventName = "ztm.decision_log.gap";
            log.SeverityNumber = SeverityNumber.Warn;
            log.SeverityText = "WARN";
            log.Body = new AnyValue { StringValue = $"{record.Lost} decision(s) not logged here" };
            log.Attributes.Add(Attribute("ztm.decision_log.lost", record.Lost));
        }
        else
        {
            var verdict = decision.Allowed ? "allow" : "deny";
            log.EventName = "ztm.decision";
            log.SeverityNumber = decision.Allowed ? SeverityNumber.Info : SeverityNumber.Warn;
            log.SeverityText = decision.Allowed ? "INFO" : "WARN";
            log.Body = new AnyValue { StringValue = $"{decision.Method} {decision.Path} {decision.Status} {verdict}" };
            log.Attributes.Add(Attribute("ztm.caller", decision.Caller));
            log.Attributes.Add(Attribute("http.request.method", decision.Method));
            log.Attributes.Add(Attribute("url.path", decision.Path));
            log.Attributes.Add(Attribute("server.port", decision.Port));
            log.Attributes.Add(Attribute("http.response.status_code", decision.Status));
            log.Attributes.Add(Attribute("ztm.decision", verdict));
            if (decision.Policy is { } policy)
            {
                log.Attributes.Add(Attribute("ztm.policy", policy));
                log.Attributes.Add(Attribute("ztm.rule", decision.Rule));
            }
            if (decision.Reason is { } reason)
            {
                log.Attributes.Add(Attribute("ztm.reason", reason));
            }
        }
        log.Attributes.Add(Attribute("ztm.decision_log.chain", record.Chain));
        log.Attributes.Add(Attribute("ztm.decision_log.sequence", record.Sequence));
        log.Attributes.Add(Attribute("ztm.decision_log.hash", record.Hash));
        return log;
    }

    private static KeyValue Attribute(string key, string value) => new() { Key = key, Value = new AnyValue { StringValue = value } };

    private static KeyValue Attribute(string key, long value) => new() { Key = key, Value = new AnyValue { IntValue = value } };

    private static ulong Nanoseconds(DateTimeOffset time) => (ulong)(time.UtcTicks - DateTime.UnixEpoch.Ticks) * 100;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        _queue.Writer.TryComplete();
        await _abort.CancelAsync();
        await _sender;
        _http.Dispose();
        _abort.Dispose();
        _stopping.Dispose();
    }

    /// <summary>A chained record waiting to be exported; <see cref="Lost"/> above 0 makes it a gap record.</summary>
    internal readonly record struct Exported(Decision Decision, string Chain, long Sequence, string Hash, long Lost);
}
