using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.Inbound;
using PeerAuthenticationResource = ZeroTrustMesh.Policy.Kinds.PeerAuthentication;

namespace ZeroTrustMesh.Sidecar.PeerAuthentication;

/// <summary>
/// PeerAuthentication, enforced: always compiled (no resource means STRICT). It tells the inbound listener whether a
/// plaintext connection may be accepted at all (<see cref="IPlaintextAdmission"/>), and refuses each plaintext request
/// to a port that is STRICT now — PERMISSIVE for another port, or switched back to STRICT since the connection was
/// accepted. Requests over mTLS pass untouched.
/// </summary>
internal sealed class PeerAuthenticationStage(PeerAuthenticationPolicy policy) : IInboundStage, IPlaintextAdmission
{
    public PeerAuthenticationPolicy Policy => policy;

    public bool AcceptsPlaintext => policy.AcceptsPlaintext;

    public string Summary => policy.Source is { } source ? $"{policy} ({source})" : policy.ToString();

    public ValueTask<StageResult> RunAsync(InboundRequest request, CancellationToken cancellation)
    {
        if (!request.IsPlaintext || policy.ModeFor(request.Port) == MtlsMode.Permissive)
        {
            return ValueTask.FromResult(StageResult.Continue);
        }
        var source = policy.Source is { } name ? $" (PeerAuthentication '{name}')" : "";
        // HTTP/2 has no way to ask for the connection to close: each of its requests is checked like this one.
        return ValueTask.FromResult(StageResult.Refuse(new Refusal(StatusCodes.Status403Forbidden, "mtls_required",
            $"mTLS required: port {request.Port} of this workload is STRICT{source}") { CloseConnection = true }));
    }
}

internal sealed class PeerAuthenticationStageKind : IInboundStageKind
{
    public PolicyKind Kind => PeerAuthenticationKind.Instance;

    public int Order => InboundStageOrder.PeerAuthentication;

    public IInboundStage Compile(IReadOnlyList<PolicyResource> resources, StageContext context) =>
        new PeerAuthenticationStage(PeerAuthenticationPolicy.Compile(context.Workload, resources.Cast<PeerAuthenticationResource>()));
}
