using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>Authenticates a workload caller by the SVID it presented over mTLS.</summary>
internal sealed class WorkloadCaller(CertificateAuthority ca)
{
    /// <exception cref="RpcException">Unauthenticated without a valid SVID of this trust domain; PermissionDenied for a non-workload identity.</exception>
    public SpiffeId Require(ServerCallContext context)
    {
        var verification = SvidVerifier.Verify(PeerCertificate.Of(context), ca.ChainAfterLeaf, ca.Bundle, ca.Time.GetUtcNow(), purpose: SvidPurpose.Client);
        if (!verification.IsValid)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, $"this call needs the caller's SVID over mTLS: {verification.Reason}"));
        }
        if (!verification.Id.TryGetWorkload(out _, out _))
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"'{verification.Id}' is not a workload identity"));
        }
        return verification.Id;
    }
}
