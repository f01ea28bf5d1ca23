using ZeroTrustMesh.Policy.Kinds;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>Anomaly response's log lines (event ids 700–719).</summary>
internal static partial class AnomalyLog
{
    [LoggerMessage(EventId = 700, Level = LogLevel.Warning,
        Message = "anomaly event={Id} caller={Principal} workload={Workload} route={Route} {From} -> {To} mode={Mode} reason=\"{Reason}\" action=\"{Action}\"")]
    public static partial void Transition(ILogger logger, long id, string principal, string workload, string route, AnomalyState from, AnomalyState to, AnomalyMode mode, string reason, string action);

    [LoggerMessage(EventId = 701, Level = LogLevel.Information, Message = "anomaly restrictions pushed: {Throttles} throttle(s), {Quarantines} quarantine(s), config version {Version}")]
    public static partial void Pushed(ILogger logger, int throttles, int quarantines, string version);

    [LoggerMessage(EventId = 702, Level = LogLevel.Warning, Message = "anomaly quarantine could not revoke {SpiffeId}: {Reason}")]
    public static partial void RevocationFailed(ILogger logger, string spiffeId, string reason);

    [LoggerMessage(EventId = 703, Level = LogLevel.Information, Message = "anomaly state taken from {Location}: {Tracks} track(s), {Restricted} restricted, saved at {SavedAt:O}")]
    public static partial void StateLoaded(ILogger logger, string location, int tracks, int restricted, DateTimeOffset savedAt);

    [LoggerMessage(EventId = 704, Level = LogLevel.Warning, Message = "anomaly state not taken from {Location} (baselines start over, no restriction is in force): {Reason}")]
    public static partial void StateNotLoaded(ILogger logger, string location, string reason);

    [LoggerMessage(EventId = 705, Level = LogLevel.Warning, Message = "anomaly state stored in {Location} with {Tracks} track(s); {LeftOut} least recently seen normal track(s) left out (they learn again after a restart)")]
    public static partial void StateTruncated(ILogger logger, string location, int tracks, int leftOut);

    [LoggerMessage(EventId = 706, Level = LogLevel.Warning, Message = "anomaly state not shared, tried again next window: {Reason}")]
    public static partial void SyncFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 707, Level = LogLevel.Warning, Message = "anomaly counts in ConfigMap {Namespace}/{Name} not taken: {Reason}")]
    public static partial void CountsUnreadable(ILogger logger, string @namespace, string name, string reason);

    [LoggerMessage(EventId = 708, Level = LogLevel.Warning, Message = "anomaly counts of replica {Replica}: {Batches} batch(es) were replaced before the leader read them, and are not counted")]
    public static partial void CountsMissed(ILogger logger, string replica, long batches);

    [LoggerMessage(EventId = 709, Level = LogLevel.Warning, Message = "anomaly counts of replica {Replica}: {Requests} request(s) not handed over (more callers x routes than a batch holds)")]
    public static partial void CountsDropped(ILogger logger, string replica, long requests);
}
