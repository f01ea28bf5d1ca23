namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>The injection webhook's and the caBundle publisher's log lines, with their event ids (400–429).</summary>
internal static partial class InjectionLog
{
    [LoggerMessage(EventId = 400, Level = LogLevel.Information, Message = "pod injected namespace={Namespace} pod={Pod}")]
    public static partial void Injected(ILogger logger, string @namespace, string pod);

    [LoggerMessage(EventId = 401, Level = LogLevel.Debug, Message = "pod not injected namespace={Namespace} pod={Pod}: {Reason}")]
    public static partial void Skipped(ILogger logger, string @namespace, string pod, string reason);

    [LoggerMessage(EventId = 402, Level = LogLevel.Warning, Message = "pod refused namespace={Namespace} pod={Pod}: {Reason}")]
    public static partial void Refused(ILogger logger, string @namespace, string pod, string reason);

    [LoggerMessage(EventId = 403, Level = LogLevel.Warning, Message = "admission review refused status={Status} peer={Peer}: {Reason}")]
    public static partial void BadReview(ILogger logger, int status, string reason, string peer);

    [LoggerMessage(EventId = 410, Level = LogLevel.Information, Message = "caBundle of MutatingWebhookConfiguration {Name} set to the mesh roots ({Roots} root(s), {Webhooks} webhook(s))")]
    public static partial void CaBundleUpdated(ILogger logger, string name, int roots, int webhooks);

    [LoggerMessage(EventId = 411, Level = LogLevel.Warning, Message = "caBundle of MutatingWebhookConfiguration {Name} not updated, retrying in {RetrySeconds:0.#}s: {Reason}")]
    public static partial void CaBundleFailed(ILogger logger, string name, double retrySeconds, string reason);

    [LoggerMessage(EventId = 413, Level = LogLevel.Debug, Message = "caBundle of MutatingWebhookConfiguration {Name} already holds the mesh roots")]
    public static partial void CaBundleCurrent(ILogger logger, string name);

    [LoggerMessage(EventId = 412, Level = LogLevel.Information, Message = "trust bundle ConfigMap {Name} current in {Count} namespace(s) labelled ztm.dev/inject=enabled")]
    public static partial void RootConfigMapsPublished(ILogger logger, string name, int count);

    [LoggerMessage(EventId = 414, Level = LogLevel.Warning, Message = "trust bundle ConfigMap {Name} not published, retrying in {RetrySeconds:0.#}s: {Reason}")]
    public static partial void RootConfigMapsFailed(ILogger logger, string name, double retrySeconds, string reason);
}
