using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Authorization;

/// <summary>
/// AuthorizationPolicy, enforced: always compiled (no ALLOW policy means deny). A matching DENY wins, else an ALLOW
/// must match, else deny; a denial is a 403 naming the policy and rule (or that none allowed it). A plaintext caller
/// matches no <c>principals</c> or <c>namespaces</c>. The workload's declared probe paths are allowed for GET/HEAD.
/// </summary>
internal sealed class AuthorizationStage(PolicySnapshot snapshot, SidecarMetrics metrics) : IInboundStage
{
    public PolicySnapshot Snapshot => snapshot;

    public string Summary => $"{snapshot.PolicyCount} policies, {snapshot.RuleCount} rules{(snapshot.HasAllowPolicy ? "" : ", no ALLOW policy: deny all")}";

    public ValueTask<StageResult> RunAsync(InboundRequest request, CancellationToken cancellation)
    {
        var decision = snapshot.Evaluate(new RequestAttributes
        {
            Caller = request.Caller,
            CallerNamespace = request.CallerNamespace,
            Method = request.Method,
            Path = request.Path,
            Port = request.Port,
            Headers = request.HeaderValues,
            Claims = request.Claims,
            SourceAddress = request.SourceAddress,
            Now = request.Now,
        }, default);
        metrics.Decision(decision.Allowed, decision.Policy);
        request.DecidingPolicy = decision.Policy;
        request.DecidingRule = decision.Rule;
        return ValueTask.FromResult(decision.Allowed
            ? StageResult.Continue
            // The reason names the deciding policy and rule, or says that none allowed the request.
            : StageResult.Refuse(new Refusal(StatusCodes.Status403Forbidden, "denied", $"RBAC: access denied: {decision.Reason}")));
    }
}

internal sealed class AuthorizationStageKind(SidecarOptions options, SidecarMetrics metrics) : IInboundStageKind
{
    public PolicyKind Kind => AuthorizationPolicyKind.Instance;

    public int Order => InboundStageOrder.Authorization;

    /// <exception cref="ArgumentException">A policy is invalid (the control plane validates first; this is the sidecar's own check).</exception>
    public IInboundStage Compile(IReadOnlyList<PolicyResource> resources, StageContext context)
    {
        try
        {
            return new AuthorizationStage(PolicyCompiler.Compile(context.Version, context.Workload, resources.Cast<AuthorizationPolicy>(), options.ProbePaths), metrics);
        }
        catch (PolicyValidationException e)
        {
            throw new ArgumentException(e.Message, e);
        }
    }
}
