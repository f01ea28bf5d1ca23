namespace ZeroTrustMesh.ControlPlane.Coordination;

/// <summary>Log events of the state replicas share through the Kubernetes API (500–549): the Lease, the CA Secret, revocations, config versions, the replicas' sidecar reports.</summary>
internal static partial class CoordinationLog
{
    [LoggerMessage(EventId = 500, Level = LogLevel.Information, Message = "leading: {Identity} holds Lease {Namespace}/{Lease}; singleton work starts")]
    public static partial void LeadershipStarted(ILogger logger, string identity, string @namespace, string lease);

    [LoggerMessage(EventId = 501, Level = LogLevel.Warning, Message = "leadership lost: {Identity} no longer holds Lease {Namespace}/{Lease}; singleton work stopped")]
    public static partial void LeadershipLost(ILogger logger, string identity, string @namespace, string lease);

    [LoggerMessage(EventId = 502, Level = LogLevel.Information, Message = "leader is {Leader} (Lease {Namespace}/{Lease})")]
    public static partial void LeaderObserved(ILogger logger, string leader, string @namespace, string lease);

    [LoggerMessage(EventId = 503, Level = LogLevel.Warning, Message = "leader election failed, retrying in {RetrySeconds:0.#}s: {Reason}")]
    public static partial void LeaderElectionFailed(ILogger logger, string reason, double retrySeconds);

    [LoggerMessage(EventId = 504, Level = LogLevel.Information, Message = "Lease released: {Identity} gave up Lease {Namespace}/{Lease} on stop")]
    public static partial void LeaseReleased(ILogger logger, string identity, string @namespace, string lease);

    [LoggerMessage(EventId = 505, Level = LogLevel.Warning, Message = "Lease {Namespace}/{Lease} not released on stop (the next leader waits a lease duration): {Reason}")]
    public static partial void LeaseNotReleased(ILogger logger, string @namespace, string lease, string reason);

    [LoggerMessage(EventId = 510, Level = LogLevel.Information, Message = "revocations changed by another replica: {Action} by {Actor} ({Count} in force, ConfigMap resourceVersion {ResourceVersion})")]
    public static partial void RevocationsFollowed(ILogger logger, string action, string actor, int count, string resourceVersion);

    [LoggerMessage(EventId = 511, Level = LogLevel.Warning, Message = "revocations watch failed, retrying in {RetrySeconds:0.#}s: {Reason}")]
    public static partial void RevocationsWatchFailed(ILogger logger, double retrySeconds, string reason);

    [LoggerMessage(EventId = 520, Level = LogLevel.Warning, Message = "config version not agreed through ConfigMap {Name}: {Reason}; using {Version} from this replica's count")]
    public static partial void ConfigVersionNotShared(ILogger logger, string name, string reason, string version);

    [LoggerMessage(EventId = 530, Level = LogLevel.Warning, Message = "sidecar report not written to ConfigMap {Namespace}/{Name}, retrying in {RetrySeconds:0.#}s: {Reason}")]
    public static partial void ReplicaReportNotWritten(ILogger logger, string @namespace, string name, double retrySeconds, string reason);

    [LoggerMessage(EventId = 531, Level = LogLevel.Information, Message = "replica {Replica} stopped reporting its sidecars (ConfigMap {Namespace}/{Name} unchanged for {Seconds:0} s): its report is ignored, its sidecars count where they reconnect")]
    public static partial void ReplicaReportStale(ILogger logger, string replica, string @namespace, string name, double seconds);

    [LoggerMessage(EventId = 532, Level = LogLevel.Warning, Message = "sidecar report ConfigMap {Namespace}/{Name} is not owned by pod {Pod} (so not deleted with it; ignored once stale): {Reason}")]
    public static partial void ReplicaReportNotOwned(ILogger logger, string @namespace, string name, string pod, string reason);
}
