using Prometheus;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.Telemetry;

/// <summary>Every metric the sidecar exports on the admin port's <c>/metrics</c>, in one place.</summary>
internal sealed class SidecarMetrics
{
    private readonly Counter _requests;
    private readonly Histogram _duration;
    private readonly Counter _handshakeFailures;
    private readonly Counter _tcpBytes;
    private readonly Counter _tcpConnections;
    private readonly Gauge _tcpActive;
    private readonly Counter _l4Connections;
    private readonly Counter _retries;
    private readonly Counter _ejections;
    private readonly Counter _rejected;
    private readonly Counter _decisions;
    private readonly Counter _authentication;
    private readonly Counter _rateLimited;
    private readonly Counter _apiValidation;
    private readonly Counter _apiRedactions;
    private readonly Counter _inboundConnections;
    private readonly Counter _memoryTrims;
    private readonly Counter _accessLogDropped;
    private readonly Counter _observationsDropped;
    private readonly Counter _decisionLogLost;
    private readonly Counter _decisionLogExported;
    private readonly Counter _decisionLogExportDropped;

    public SidecarMetrics(IdentityState state)
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        _requests = factory.CreateCounter("ztm_requests_total", "HTTP requests handled, by direction, caller and destination identity, and response code.",
            "direction", "source", "destination", "code");
        _duration = factory.CreateHistogram("ztm_request_duration_seconds", "Time from request received to response completed.",
            new HistogramConfiguration
            {
                LabelNames = ["direction"],
                Buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            });
        _handshakeFailures = factory.CreateCounter("ztm_tls_handshake_failures_total", "mTLS handshakes refused, by direction and reason.", "direction", "reason");
        _tcpBytes = factory.CreateCounter("ztm_tcp_bytes_total", "Bytes relayed on opaque TCP connections.", "direction", "flow");
        _tcpConnections = factory.CreateCounter("ztm_tcp_connections_total", "Opaque TCP connections relayed.", "direction");
        _tcpActive = factory.CreateGauge("ztm_tcp_connections_active", "Opaque TCP connections open now.", "direction");
        _l4Connections = factory.CreateCounter("ztm_l4_connections_total",
            "Connections relayed as bytes and authorized once (mode: l4 for an HTTP port in L4 mode, tcp for a declared TCP port), by outcome.",
            "direction", "source", "destination", "mode", "outcome");
        _retries = factory.CreateCounter("ztm_outbound_retries_total", "Outbound requests retried after a connect failure, by destination service.", "service");
        _ejections = factory.CreateCounter("ztm_outbound_ejections_total", "Destination endpoints ejected by the circuit breaker, by service.", "service");
        _rejected = factory.CreateCounter("ztm_rejected_requests_total", "Requests refused before forwarding, by direction and reason.", "direction", "reason");
        _decisions = factory.CreateCounter("ztm_authorization_decisions_total", "Authorization decisions on inbound requests, by decision and the policy that decided (none: no ALLOW policy matched).",
            "decision", "policy");
        _authentication = factory.CreateCounter("ztm_jwt_authentication_total", "Inbound requests that carried a bearer token, by outcome (valid, invalid).", "outcome");
        _apiValidation = factory.CreateCounter("ztm_api_validation_total",
            "Inbound requests checked by an ApiSpec, by policy and result (valid, invalid, too_large, unknown, object_denied); DryRun and Enforce count the same verdicts.", "policy", "result");
        _apiRedactions = factory.CreateCounter("ztm_api_redactions_total", "Response values removed or masked by an ApiSpec's redaction, by policy.", "policy");
        _rateLimited = factory.CreateCounter("ztm_rate_limited_total", "Inbound requests refused by a RateLimitPolicy (429; policy namespace/name) or by anomaly response (429 throttled, 403 quarantined; policy anomaly-response).", "policy");
        _inboundConnections = factory.CreateCounter("ztm_inbound_connections_total",
            "HTTP connections accepted on the inbound port, by security: mtls, or plaintext (a PERMISSIVE workload).", "security");
        _memoryTrims = factory.CreateCounter("ztm_memory_trims_total",
            "Full garbage collections run to hand memory back to the OS after the heap outgrew its live data, or once a quiet sidecar still held its last requests' garbage (see MemoryTrimmer).");
        _accessLogDropped = factory.CreateCounter("ztm_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind (its queue was full): requests are never slowed down to log them.");
        _observationsDropped = factory.CreateCounter("ztm_observations_dropped_total",
            "Request observations not sent to the control plane: the buffer was full (--observation-buffer) or the stream broke with them in flight. Requests are never slowed down to report them.");
        _decisionLogLost = factory.CreateCounter("ztm_decision_log_lost_total",
            "Decisions not written to the decision log (its queue was full, or the directory could not be written); the chain records each run of them as a gap.");
        _decisionLogExported = factory.CreateCounter("ztm_decision_log_exported_total",
            "Decision-log records the OTLP collector accepted (--decision-log-otlp).");
        _decisionLogExportDropped = factory.CreateCounter("ztm_decision_log_export_dropped_total",
            "Decision-log records not exported to the OTLP collector, by reason: queue_full (the collector fell behind), collector_unreachable (retries ran out), collector_refused, stopped. The log on disk still holds them.",
            "reason");
        var expiry = factory.CreateGauge("ztm_certificate_expiry_timestamp_seconds", "Unix time at which the sidecar's current certificate expires.");
        state.Changed += identity => expiry.Set(identity.NotAfter.ToUnixTimeSeconds());
    }

    public CollectorRegistry Registry { get; }

    /// <summary>Answers a Prometheus scrape (admin port and health port alike).</summary>
    public Task WriteAsync(HttpContext context)
    {
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        return Registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted);
    }

    /// <summary>Status codes as label values, formatted once rather than per request.</summary>
    private static readonly string[] StatusCodes = [.. Enumerable.Range(0, 600).Select(c => c.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    public void Request(string direction, string source, string destination, int code, TimeSpan duration)
    {
        _requests.WithLabels(direction, source, destination, (uint)code < (uint)StatusCodes.Length ? StatusCodes[code] : code.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
        _duration.WithLabels(direction).Observe(duration.TotalSeconds);
    }

    public void HandshakeFailed(string direction, SvidFailure reason) => _handshakeFailures.WithLabels(direction, reason.ToString()).Inc();

    public void HandshakeFailed(string direction, string reason) => _handshakeFailures.WithLabels(direction, reason).Inc();

    public void Decision(bool allowed, string? policy) => _decisions.WithLabels(allowed ? "allow" : "deny", policy ?? "none").Inc();

    public void Authenticated(bool valid) => _authentication.WithLabels(valid ? "valid" : "invalid").Inc();

    public void ApiValidation(string policy, string result) => _apiValidation.WithLabels(policy, result).Inc();

    /// <summary>The <c>ztm_api_validation_total</c> series of one policy and result, for a caller that counts it per request (looked up once, not per request).</summary>
    public Counter.Child ApiValidationCounter(string policy, string result) => _apiValidation.WithLabels(policy, result);

    public void ApiRedacted(string policy, int values) => _apiRedactions.WithLabels(policy).Inc(values);

    public void RateLimited(string policy) => _rateLimited.WithLabels(policy).Inc();

    /// <param name="security"><c>mtls</c> or <c>plaintext</c>.</param>
    public void InboundConnection(string security) => _inboundConnections.WithLabels(security).Inc();

    public void Rejected(string direction, string reason) => _rejected.WithLabels(direction, reason).Inc();

    /// <param name="outcome"><c>allowed</c>, <c>denied</c>, <c>closed_by_policy</c> (a new config no longer allowed it), <c>app_unreachable</c>.</param>
    public void L4Connection(string direction, string source, string destination, string mode, string outcome) =>
        _l4Connections.WithLabels(direction, source, destination, mode, outcome).Inc();

    public void TcpOpened(string direction)
    {
        _tcpConnections.WithLabels(direction).Inc();
        _tcpActive.WithLabels(direction).Inc();
    }

    public void TcpClosed(string direction, long bytesIn, long bytesOut)
    {
        _tcpActive.WithLabels(direction).Dec();
        _tcpBytes.WithLabels(direction, "received").Inc(bytesIn);
        _tcpBytes.WithLabels(direction, "sent").Inc(bytesOut);
    }

    public void Retried(string service) => _retries.WithLabels(service).Inc();

    public void Ejected(string service) => _ejections.WithLabels(service).Inc();

    public void MemoryTrimmed() => _memoryTrims.Inc();

    public void AccessLogLineDropped() => _accessLogDropped.Inc();

    public void ObservationDropped(long count = 1) => _observationsDropped.Inc(count);
    public void DecisionLogLost() => _decisionLogLost.Inc();

    public void DecisionLogExported(long count) => _decisionLogExported.Inc(count);

    public void DecisionLogExportDropped(string reason, long count) => _decisionLogExportDropped.WithLabels(reason).Inc(count);
}
