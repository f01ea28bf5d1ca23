using ZeroTrustMesh.ControlPlane.Ca;

namespace ZeroTrustMesh.ControlPlane;

/// <summary>Every log line of the control plane, with its event id. Never log tokens or key material.</summary>
internal static partial class ControlPlaneLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information,
        Message = "svid issued spiffe_id={SpiffeId} serial={Serial} not_after={NotAfter:O} via={Via} key=\"{Key}\" peer={Peer}")]
    public static partial void SvidIssued(ILogger logger, string spiffeId, string serial, DateTimeOffset notAfter, string via, string key, string peer);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning,
        Message = "svid refused call={Call} code={Code} reason=\"{Reason}\" peer={Peer}")]
    public static partial void SvidRefused(ILogger logger, string call, RefusalKind code, string reason, string peer);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning,
        Message = "svid not issued call={Call} code=Unavailable reason=\"{Reason}\" peer={Peer}")]
    public static partial void SvidUnavailable(ILogger logger, string call, string reason, string peer);

    [LoggerMessage(EventId = 110, Level = LogLevel.Information,
        Message = "join token created spiffe_id={SpiffeId} expires={ExpiresAt:O}")]
    public static partial void JoinTokenCreated(ILogger logger, string spiffeId, DateTimeOffset expiresAt);

    [LoggerMessage(EventId = 111, Level = LogLevel.Warning,
        Message = "join token refused reason=\"{Reason}\"")]
    public static partial void JoinTokenRefused(ILogger logger, string reason);

    [LoggerMessage(EventId = 120, Level = LogLevel.Warning,
        Message = "admin call refused method={Method} reason=\"{Reason}\" peer={Peer}")]
    public static partial void AdminRefused(ILogger logger, string method, string reason, string peer);

    [LoggerMessage(EventId = 112, Level = LogLevel.Warning,
        Message = "certificate revoked {Subject} until={ExpiresAt:O} by={Actor} version={Version} reason=\"{Reason}\"")]
    public static partial void CertificateRevoked(ILogger logger, string subject, DateTimeOffset expiresAt, string actor, string version, string reason);

    [LoggerMessage(EventId = 113, Level = LogLevel.Information,
        Message = "{Count} revocation(s) dropped: every certificate they covered has expired; version={Version}")]
    public static partial void RevocationsExpired(ILogger logger, int count, string version);

    [LoggerMessage(EventId = 114, Level = LogLevel.Warning, Message = "revocation refused reason=\"{Reason}\"")]
    public static partial void RevocationRefused(ILogger logger, string reason);

    [LoggerMessage(EventId = 115, Level = LogLevel.Error, Message = "revocations could not be pruned, retrying in {RetrySeconds:0}s: {Reason}")]
    public static partial void RevocationPruneFailed(ILogger logger, string reason, double retrySeconds);

    [LoggerMessage(EventId = 130, Level = LogLevel.Debug,
        Message = "endpoint registered service={Service} spiffe_id={SpiffeId} inbound={Inbound}")]
    public static partial void EndpointRegistered(ILogger logger, string service, string spiffeId, string inbound);

    [LoggerMessage(EventId = 133, Level = LogLevel.Debug,
        Message = "registry heartbeat spiffe_id={SpiffeId} inbound={Inbound}: not recorded, endpoints come from the Kubernetes API")]
    public static partial void HeartbeatOnly(ILogger logger, string spiffeId, string inbound);

    [LoggerMessage(EventId = 134, Level = LogLevel.Information, Message = "registry listed {Resource} count={Count} resourceVersion={ResourceVersion}")]
    public static partial void RegistryListed(ILogger logger, string resource, int count, string resourceVersion);

    [LoggerMessage(EventId = 135, Level = LogLevel.Information, Message = "registry watch of {Resource} expired at resourceVersion {ResourceVersion} (410 Gone): listing again")]
    public static partial void RegistryRelist(ILogger logger, string resource, string resourceVersion);

    [LoggerMessage(EventId = 136, Level = LogLevel.Warning, Message = "registry watch of {Resource} failed, retrying in {RetrySeconds:0.#}s (suppressed={Suppressed}): {Reason}")]
    public static partial void RegistryWatchFailed(ILogger logger, string resource, double retrySeconds, string reason, long suppressed);

    [LoggerMessage(EventId = 137, Level = LogLevel.Warning, Message = "registry: Services, EndpointSlices and Pods not listed within {Seconds}s of start: destinations resolve to nothing until they are; still trying")]
    public static partial void RegistryNotListedYet(ILogger logger, int seconds);

    [LoggerMessage(EventId = 131, Level = LogLevel.Warning, Message = "registry could not be saved to {Path} (kept in memory; retried at the next change): {Reason}")]
    public static partial void RegistryNotSaved(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 132, Level = LogLevel.Warning, Message = "registry could not be read from {Path}; sidecars fill it as they heartbeat: {Reason}")]
    public static partial void RegistryNotLoaded(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "config {Version} {Action} by {Actor}: {Resources}")]
    public static partial void ConfigChanged(ILogger logger, string version, string action, string actor, string resources);

    [LoggerMessage(EventId = 201, Level = LogLevel.Warning, Message = "policy directory not applied, the last good set stays: {Error}")]
    public static partial void PolicyDirectoryInvalid(ILogger logger, string error);

    [LoggerMessage(EventId = 203, Level = LogLevel.Warning, Message = "policy directory invalid at start: serving the last good set, {Count} resource(s) from {Path}")]
    public static partial void PolicyDirectoryInvalidAtStart(ILogger logger, int count, string path);

    [LoggerMessage(EventId = 202, Level = LogLevel.Warning, Message = "policy apply refused from {Actor}: {Errors}")]
    public static partial void PolicyRefused(ILogger logger, string actor, string errors);

    [LoggerMessage(EventId = 210, Level = LogLevel.Information, Message = "config stream opened spiffe_id={SpiffeId}")]
    public static partial void ConfigStreamOpened(ILogger logger, string spiffeId);

    [LoggerMessage(EventId = 211, Level = LogLevel.Information, Message = "config stream closed spiffe_id={SpiffeId} version_applied={Version}")]
    public static partial void ConfigStreamClosed(ILogger logger, string spiffeId, string version);

    [LoggerMessage(EventId = 213, Level = LogLevel.Warning, Message = "config stream ended spiffe_id={SpiffeId} code={Code} reason=\"{Reason}\"")]
    public static partial void ConfigStreamEnded(ILogger logger, string spiffeId, Grpc.Core.StatusCode code, string reason);

    [LoggerMessage(EventId = 212, Level = LogLevel.Warning, Message = "config NACK spiffe_id={SpiffeId} version={Version} error=\"{Error}\"")]
    public static partial void ConfigNacked(ILogger logger, string spiffeId, string version, string error);

    [LoggerMessage(EventId = 220, Level = LogLevel.Information, Message = "policy custom resources listed kind={Kind} count={Count} resourceVersion={ResourceVersion}")]
    public static partial void PolicyListed(ILogger logger, string kind, int count, string resourceVersion);

    [LoggerMessage(EventId = 221, Level = LogLevel.Information, Message = "policy {Event} {Resource} generation={Generation}: {Outcome} (suppressed={Suppressed})")]
    public static partial void PolicyResourceEvent(ILogger logger, string @event, string resource, long generation, string outcome, long suppressed);

    [LoggerMessage(EventId = 222, Level = LogLevel.Information, Message = "policy watch of {Kind} expired at resourceVersion {ResourceVersion} (410 Gone): listing again")]
    public static partial void PolicyRelist(ILogger logger, string kind, string resourceVersion);

    [LoggerMessage(EventId = 223, Level = LogLevel.Warning, Message = "policy watch of {Kind} failed, retrying in {RetrySeconds:0.#}s (suppressed={Suppressed}): {Reason}")]
    public static partial void PolicyWatchFailed(ILogger logger, string kind, double retrySeconds, string reason, long suppressed);

    [LoggerMessage(EventId = 224, Level = LogLevel.Warning, Message = "policy custom resources not published, the last good set stays: {Errors}")]
    public static partial void PolicySetRefused(ILogger logger, string errors);

    [LoggerMessage(EventId = 228, Level = LogLevel.Warning, Message = "policy custom resource {Resource} left out, the others are published: {Reason}")]
    public static partial void PolicyResourceLeftOut(ILogger logger, string resource, string reason);

    [LoggerMessage(EventId = 225, Level = LogLevel.Warning, Message = "policy custom resources not listed within {Seconds}s of start: sidecars get no policy (deny) until they are; still trying")]
    public static partial void PolicyNotListedYet(ILogger logger, int seconds);

    [LoggerMessage(EventId = 226, Level = LogLevel.Information, Message = "policy status {Resource} Accepted={Status} reason={Reason} observedGeneration={Generation}")]
    public static partial void PolicyStatusWritten(ILogger logger, string resource, string status, string reason, long generation);

    [LoggerMessage(EventId = 227, Level = LogLevel.Warning, Message = "policy status of {Resource} not written, retrying in {RetrySeconds:0.#}s (suppressed={Suppressed}): {Reason}")]
    public static partial void PolicyStatusFailed(ILogger logger, string resource, double retrySeconds, string reason, long suppressed);

    [LoggerMessage(EventId = 300, Level = LogLevel.Information,
        Message = "TLS handshake failed peer={Peer} reason=MalformedHandshake total={Total} suppressed={Suppressed}: a malformed ClientHello ({Error}: {Message})")]
    public static partial void MalformedHandshake(ILogger logger, string peer, string error, string message, long total, long suppressed);

    [LoggerMessage(EventId = 301, Level = LogLevel.Warning,
        Message = "connection refused peer={Peer} reason=FrameTimeout total={Total} suppressed={Suppressed}: an HTTP/2 frame did not arrive whole within {Seconds:0} s of its first byte; connection closed")]
    public static partial void FrameTimedOut(ILogger logger, string peer, double seconds, long total, long suppressed);

    [LoggerMessage(EventId = 140, Level = LogLevel.Information,
        Message = "ca rotation {Step} phase={Phase} bundle_sequence={Sequence} signing_root={Signing} roots={Roots} by={By}: {Detail}")]
    public static partial void CaRotationStep(ILogger logger, string step, string phase, ulong sequence, string signing, string roots, string by, string detail);

    [LoggerMessage(EventId = 141, Level = LogLevel.Information, Message = "ca rotation {Phase} waits: {Reason}")]
    public static partial void CaRotationWaiting(ILogger logger, string phase, string reason);

    [LoggerMessage(EventId = 142, Level = LogLevel.Warning, Message = "ca rotation step not taken, retried in {RetrySeconds:0.#}s: {Reason}")]
    public static partial void CaRotationFailed(ILogger logger, double retrySeconds, string reason);

    [LoggerMessage(EventId = 143, Level = LogLevel.Warning, Message = "ca rotation refused: {Reason}")]
    public static partial void CaRotationRefused(ILogger logger, string reason);
}
