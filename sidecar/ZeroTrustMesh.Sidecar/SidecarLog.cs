namespace ZeroTrustMesh.Sidecar;

/// <summary>Every log line of the sidecar, with its event id. Never log tokens or key material.</summary>
internal static partial class SidecarLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information,
        Message = "svid {Via} spiffe_id={SpiffeId} serial={Serial} not_after={NotAfter:O}")]
    public static partial void SvidIssued(ILogger logger, string spiffeId, string serial, DateTimeOffset notAfter, string via);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning,
        Message = "svid {Call} failed attempt={Attempt} retry_in={RetrySeconds:0.0}s reason=\"{Reason}\"")]
    public static partial void IssuanceFailed(ILogger logger, string call, int attempt, double retrySeconds, string reason);

    [LoggerMessage(EventId = 102, Level = LogLevel.Error,
        Message = "{Proof} refused by the control plane, exiting: {Reason}")]
    public static partial void BootstrapRefused(ILogger logger, string proof, string reason);

    [LoggerMessage(EventId = 103, Level = LogLevel.Error,
        Message = "svid expired spiffe_id={SpiffeId} serial={Serial} not_after={NotAfter:O}: failing closed until renewal succeeds")]
    public static partial void SvidExpired(ILogger logger, string spiffeId, string serial, DateTimeOffset notAfter);

    [LoggerMessage(EventId = 104, Level = LogLevel.Information,
        Message = "trust bundle {Sequence} followed from {Source}: {Roots} root(s) [{Thumbprints}]; the next handshakes verify against it")]
    public static partial void TrustBundleApplied(ILogger logger, ulong sequence, int roots, string source, string thumbprints);

    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "registered with the control plane inbound={Inbound}")]
    public static partial void Registered(ILogger logger, string inbound);

    [LoggerMessage(EventId = 201, Level = LogLevel.Warning, Message = "registry {Call} failed: {Reason}")]
    public static partial void RegistryCallFailed(ILogger logger, string call, string reason);

    [LoggerMessage(EventId = 300, Level = LogLevel.Information, Message = "{Listener} listening on {Address}")]
    public static partial void Listening(ILogger logger, string listener, string address);

    [LoggerMessage(EventId = 301, Level = LogLevel.Information, Message = "HTTP/3 is not available on this host (no MsQuic): sidecar-to-sidecar traffic uses HTTP/2")]
    public static partial void Http3Unavailable(ILogger logger);

    [LoggerMessage(EventId = 302, Level = LogLevel.Debug, Message = "start-up memory released: heap compacted to {HeapMb:0.0} MB, {PagesMb:0.0} MB of start-up code and read-only data unmapped")]
    public static partial void StartupMemoryReleased(ILogger logger, double heapMb, double pagesMb);

    [LoggerMessage(EventId = 310, Level = LogLevel.Warning, Message = "tcp relay {Direction} ended: {Reason}")]
    public static partial void TcpRelayEnded(ILogger logger, string direction, string reason);

    [LoggerMessage(EventId = 311, Level = LogLevel.Warning, Message = "{Direction} connection refused: {Reason}")]
    public static partial void ConnectionRefused(ILogger logger, string direction, string reason);

    [LoggerMessage(EventId = 312, Level = LogLevel.Warning,
        Message = "{Direction} connection refused peer={Peer} reason={Reason} suppressed={Suppressed}: {Detail}")]
    public static partial void HandshakeRefused(ILogger logger, string direction, string peer, string reason, string detail, long suppressed);

    [LoggerMessage(EventId = 313, Level = LogLevel.Information,
        Message = "{Direction} TLS handshake failed peer={Peer} reason={Reason} suppressed={Suppressed}: {Detail}")]
    public static partial void HandshakeFailed(ILogger logger, string direction, string peer, string reason, string detail, long suppressed);

    [LoggerMessage(EventId = 400, Level = LogLevel.Information, Message = "config {Version} applied: {Resources} resource(s) for this workload; inbound stages: {Stages}")]
    public static partial void ConfigApplied(ILogger logger, string version, int resources, string stages);

    [LoggerMessage(EventId = 401, Level = LogLevel.Warning, Message = "config {Version} refused (NACK), still enforcing {Current}: {Reason}")]
    public static partial void ConfigRefused(ILogger logger, string version, string reason, string current);

    [LoggerMessage(EventId = 402, Level = LogLevel.Warning, Message = "config stream to the control plane broke ({Reason}); enforcing the last good config, reconnecting in {RetrySeconds:0.0}s")]
    public static partial void ConfigStreamFailed(ILogger logger, string reason, double retrySeconds);

    [LoggerMessage(EventId = 403, Level = LogLevel.Information, Message = "revocations of config {Version} applied: {Count} in force; peers presenting a revoked certificate are refused at the handshake")]
    public static partial void RevocationsApplied(ILogger logger, string version, int count);

    [LoggerMessage(EventId = 500, Level = LogLevel.Information, Message = "jwks {Uri} fetched: {Keys} signing key(s)")]
    public static partial void JwksFetched(ILogger logger, string uri, int keys);

    [LoggerMessage(EventId = 501, Level = LogLevel.Warning, Message = "jwks {Uri} could not be fetched ({Reason}); {Consequence}")]
    public static partial void JwksFetchFailed(ILogger logger, string uri, string reason, string consequence);

    [LoggerMessage(EventId = 600, Level = LogLevel.Warning,
        Message = "api {Policy} {Outcome} result={Result} {Method} {Path} caller={Caller}: {Reason}")]
    public static partial void ApiVerdict(ILogger logger, string policy, string outcome, string result, string method, string path, string caller, string reason);

    [LoggerMessage(EventId = 760, Level = LogLevel.Information, Message = "observation stream to the control plane open (buffer {Capacity} observations)")]
    public static partial void ObservationStreamOpened(ILogger logger, int capacity);

    [LoggerMessage(EventId = 761, Level = LogLevel.Warning, Message = "observation stream to the control plane broke ({Reason}); observations wait in the buffer (dropped and counted when it is full), reconnecting in {RetrySeconds:0.0}s")]
    public static partial void ObservationStreamFailed(ILogger logger, string reason, double retrySeconds);
    [LoggerMessage(EventId = 700, Level = LogLevel.Information, Message = "decision log {Directory}: chain {Chain}, continuing at record {Sequence}")]
    public static partial void DecisionLogOpened(ILogger logger, string directory, string chain, long sequence);

    [LoggerMessage(EventId = 701, Level = LogLevel.Error, Message = "decision log {Directory} cannot be written ({Reason}); decisions are counted as lost (ztm_decision_log_lost_total) until it can, then a gap record says how many")]
    public static partial void DecisionLogFailed(ILogger logger, string directory, string reason);

    [LoggerMessage(EventId = 702, Level = LogLevel.Warning, Message = "decision log checkpoint of record {Sequence} not sent ({Reason}); retrying in {RetrySeconds:0.0}s")]
    public static partial void CheckpointDeferred(ILogger logger, long sequence, string reason, double retrySeconds);

    [LoggerMessage(EventId = 703, Level = LogLevel.Error, Message = "decision log checkpoint of record {Sequence} refused by the control plane: {Reason}")]
    public static partial void CheckpointRefused(ILogger logger, long sequence, string reason);

    [LoggerMessage(EventId = 704, Level = LogLevel.Warning, Message = "stopping with {Count} decision log checkpoint(s) not sent to the control plane; the next start continues the chain and checkpoints it")]
    public static partial void CheckpointsUnsent(ILogger logger, int count);

    [LoggerMessage(EventId = 705, Level = LogLevel.Warning, Message = "decision log export to {Endpoint} failing ({Reason}); retrying in {RetrySeconds:0.0}s, records wait in the queue (dropped and counted in ztm_decision_log_export_dropped_total when it is full)")]
    public static partial void OtlpExportFailing(ILogger logger, string endpoint, string reason, double retrySeconds);

    [LoggerMessage(EventId = 706, Level = LogLevel.Information, Message = "decision log export to {Endpoint} works again")]
    public static partial void OtlpExportRecovered(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 707, Level = LogLevel.Warning, Message = "decision log export to {Endpoint}: {Count} record(s) dropped after {Attempts} attempt(s) ({Reason})")]
    public static partial void OtlpExportGaveUp(ILogger logger, string endpoint, int count, int attempts, string reason);

    [LoggerMessage(EventId = 708, Level = LogLevel.Error, Message = "decision log export to {Endpoint}: the collector refused {Count} record(s) ({Reason}); they are dropped, not retried")]
    public static partial void OtlpExportRefused(ILogger logger, string endpoint, int count, string reason);
}
