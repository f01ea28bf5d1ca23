using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>
/// One check of the inbound path, compiled from one policy kind's resources for this workload at one config version
/// (immutable; a new version compiles new stages). It reads the request record, may add to it for the stages after it
/// (the JWT stage sets the claims the authorization stage matches), and either lets the request go on or refuses it.
/// A stage that needs the request body asks for it (<see cref="InboundRequest.ReadBodyAsync"/>, with a size cap); one that
/// rewrites the response registers a transform (<see cref="InboundRequest.TransformResponse"/>): requests that need
/// neither pay nothing for either.
/// </summary>
internal interface IInboundStage
{
    /// <summary>What the stage enforces, for <c>/config_dump</c> and the applied-config log line (e.g. <c>2 policies, 5 rules</c>).</summary>
    string Summary { get; }

    /// <summary>Checks one request. Refusals are values (<see cref="StageResult.Refuse"/>), never exceptions.</summary>
    ValueTask<StageResult> RunAsync(InboundRequest request, CancellationToken cancellation);
}

/// <summary>
/// How the sidecar enforces one policy kind: the kind (its reader, validator and wire form live in core), where its stage
/// runs in the inbound path, and how its resources for one workload become that stage. Registered in DI
/// (<see cref="InboundStageKinds.AddInboundStageKind{TKind}"/>): the sidecar accepts resources only of the kinds it
/// can enforce, and NACKs a config naming another.
/// </summary>
internal interface IInboundStageKind
{
    PolicyKind Kind { get; }

    /// <summary>Where the stage runs, lowest first (<see cref="InboundStageOrder"/>).</summary>
    int Order { get; }

    /// <summary>
    /// The stage for <paramref name="context"/>'s workload from <paramref name="resources"/> (this kind's resources that
    /// apply to it, by name), or null when no request needs a check of this kind.
    /// </summary>
    /// <exception cref="ArgumentException">The resources cannot be enforced together (the config is NACKed with the message).</exception>
    IInboundStage? Compile(IReadOnlyList<PolicyResource> resources, StageContext context);

    /// <summary>Called once a snapshot holding <paramref name="stage"/> (null: none of this kind) is enforced, to let go of what older ones used.</summary>
    void Applied(IInboundStage? stage)
    {
    }
}

/// <summary>The order of the inbound stages (DESIGN.md, "The inbound path as stages"); gaps leave room for kinds to come.</summary>
internal static class InboundStageOrder
{
    public const int PeerAuthentication = 100;
    public const int RequestAuthentication = 200;
    public const int Authorization = 300;
    public const int RateLimits = 400;
    public const int ApiProtection = 500;
    public const int ResponseTransforms = 600;
}

/// <summary>What a stage is compiled for: the config version and the workload.</summary>
internal sealed record StageContext(string Version, WorkloadRef Workload)
{
    /// <summary>The callers anomaly response restricts at this version (the rate-limit stage enforces them).</summary>
    public IReadOnlyList<CallerRestriction> Restrictions { get; init; } = [];
}

/// <summary>A stage's verdict on one request: go on (the default, allocation-free), or a refusal.</summary>
internal readonly record struct StageResult(Refusal? Refusal)
{
    public static StageResult Continue => default;

    public static StageResult Refuse(Refusal refusal) => new(refusal);
}

/// <summary>
/// A refused request, answered on the one refuse-and-record path: <paramref name="Status"/> with <paramref name="Reason"/>
/// as the body (unless <c>--explain-denials false</c>), one access-log line with the reason, and
/// <c>ztm_rejected_requests_total{reason=<paramref name="Kind"/>}</c> — a fixed word, as the reason varies.
/// </summary>
internal sealed record Refusal(int Status, string Kind, string Reason)
{
    /// <summary>A response header the refusal carries (<c>WWW-Authenticate</c>, <c>Retry-After</c>), if any.</summary>
    public (string Name, string Value)? Header { get; init; }

    /// <summary>HTTP/1.1: ask the caller to close the connection after this answer (it must not send more on it).</summary>
    public bool CloseConnection { get; init; }
}

/// <summary>A stage that also decides which connections the inbound listener accepts without TLS (PeerAuthentication).</summary>
internal interface IPlaintextAdmission
{
    /// <summary>Whether a plaintext connection may be accepted at all; each of its requests is still checked.</summary>
    bool AcceptsPlaintext { get; }
}

/// <summary>
/// A rewrite of the response body on its way back to the caller (e.g. redaction), registered by a stage for one request.
/// The body streams through it: <see cref="Wrap"/> returns the stream the app's response is written to, which writes its
/// result to the caller's stream and must have written everything once it is disposed.
/// </summary>
internal interface IResponseTransform
{
    /// <summary>Whether to transform this response (decided once its status and headers are known, e.g. by content type).</summary>
    bool Applies(HttpResponse response);

    Stream Wrap(Stream downstream);
}
