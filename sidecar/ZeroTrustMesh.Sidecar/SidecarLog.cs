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
        Message = "join token refused by the control plane, exiting: {Reason}")]
    public static partial void BootstrapRefused(ILogger logger, string reason);

    [LoggerMessage(EventId = 103, Level = LogLevel.Error,
        Message = "svid expired spiffe_id={SpiffeId} serial={Serial} not_after={NotAfter:O}: failing closed until renewal succeeds")]
    public static partial void SvidExpired(ILogger logger, string spiffeId, string serial, DateTimeOffset notAfter);
}
