using Grpc.Core;
using Grpc.Core.Interceptors;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>
/// Admin calls are zero-trust too: the caller must present the operator credential
/// (<c>spiffe://td/ztm/operator</c>, issued by this CA) over mTLS. Anyone else is refused before the service runs.
/// </summary>
internal sealed partial class OperatorOnlyInterceptor(CertificateAuthority ca, ControlPlaneCredentials credentials, ILogger<OperatorOnlyInterceptor> logger) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, responseStream, context);
    }

    private void Authorize(ServerCallContext context)
    {
        var verification = SvidVerifier.Verify(PeerCertificate.Of(context), ca.ChainAfterLeaf, ca.Bundle, ca.Time.GetUtcNow(), purpose: SvidPurpose.Client);
        if (!verification.IsValid)
        {
            ControlPlaneLog.AdminRefused(logger, context.Method, verification.Reason!, context.Peer);
            throw new RpcException(new Status(StatusCode.Unauthenticated, $"admin calls need the operator credential over mTLS: {verification.Reason}"));
        }
        if (verification.Id != credentials.OperatorId)
        {
            ControlPlaneLog.AdminRefused(logger, context.Method, $"caller is {verification.Id}", context.Peer);
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"'{verification.Id}' is not the operator ({credentials.OperatorId})"));
        }
    }
}
