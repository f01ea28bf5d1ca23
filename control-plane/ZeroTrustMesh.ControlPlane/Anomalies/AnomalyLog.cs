using ZeroTrustMesh.Policy.Kinds;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>Anomaly response's log lines (event ids 700–709).</summary>
internal static partial class AnomalyLog
{
    [LoggerMessage(EventId = 700, Level = LogLevel.Warning,
        Message = "anomaly event={Id} caller={Principal} workload={Workload} route={Route} {From} -> {To} mode={Mode} reason=\"{Reason}\" action=\"{Action}\"")]
    public static partial void Transition(ILogger logger, long id, string principal, string workload, string route, AnomalyState from, AnomalyState to, AnomalyMode mode, string reason, string action);

    [LoggerMessage(EventId = 701, Level = LogLevel.Information, Message = "anomaly restrictions pushed: {Throttles} throttle(s), {Quarantines} quarantine(s), config version {Version}")]
    public static partial void Pushed(ILogger logger, int throttles, int quarantines, string version);

    [LoggerMessage(EventId = 702, Level = LogLevel.Warning, Message = "anomaly quarantine could not revoke {SpiffeId}: {Reason}")]
    public static partial void RevocationFailed(ILogger logger, string spiffeId, string reason);
}
