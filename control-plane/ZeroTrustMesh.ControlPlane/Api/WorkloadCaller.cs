using Grpc.Core;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>Authenticates a workload caller (registry, config stream) by the SVID it presented over mTLS.</summary>
internal sealed class WorkloadCaller(CallerVerifier verifier)
{
    /// <exception cref="RpcException">
    /// Unauthenticated without a valid SVID of this trust domain; PermissionDenied for a revoked certificate (naming the
    /// revocation) or a non-workload identity.
    /// </exception>
    public CallerCheck Require(ServerCallContext context)
    {
        var check = verifier.Check(PeerCertificate.Of(context), CallerVerifier.WorkloadsOnly);
        return check.IsValid ? check : throw check.ToRpcException("this call needs the caller's SVID over mTLS");
    }
}
