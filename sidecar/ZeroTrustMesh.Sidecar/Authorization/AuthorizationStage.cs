using ZeroTrustMesh.Identity;
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
        request.Authorization = decision;
        return ValueTask.FromResult(decision.Allowed
            ? StageResult.Continue
            // The reason names the deciding policy and rule, or says that none allowed the request.
            : StageResult.Refuse(new Refusal(StatusCodes.Status403Forbidden, "denied", $"RBAC: access denied: {decision.Reason}")));
    }

    /// <summary>
    /// A connection relayed as bytes (an L4-mode port or a declared TCP port), decided once with what L4 knows: the
    /// caller's verified identity and namespace, the port, the source address and the time. Rules read as Istio reads them
    /// on TCP traffic (<see cref="ConnectionRules"/>): an ALLOW rule with methods, paths, requestPrincipals or a header or
    /// JWT condition allows no connection; a DENY or AUDIT rule applies without those fields.
    /// </summary>
    public AuthorizationDecision AuthorizeConnection(SpiffeId caller, int port, System.Net.IPAddress? source, DateTimeOffset now)
    {
        var decision = snapshot.Evaluate(new RequestAttributes
        {
            Caller = caller,
            CallerNamespace = caller.TryGetWorkload(out var ns, out _) ? ns : null,
            Port = port,
            SourceAddress = source,
            Now = now,
            IsConnection = true,
        }, default);
        metrics.Decision(decision.Allowed, decision.Policy);
        return decision;
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
