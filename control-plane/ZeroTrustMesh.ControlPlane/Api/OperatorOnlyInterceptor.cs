using Grpc.Core;
using Grpc.Core.Interceptors;
using ZeroTrustMesh.ControlPlane.Ca;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>
/// Admin calls are zero-trust too: the caller must present the operator credential
/// (<c>spiffe://td/ztm/operator</c>, issued by this CA) over mTLS. Anyone else is refused before the service runs.
/// </summary>
internal sealed partial class OperatorOnlyInterceptor(CallerVerifier verifier, ControlPlaneCredentials credentials, ILogger<OperatorOnlyInterceptor> logger) : Interceptor
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
        var check = verifier.Check(PeerCertificate.Of(context), id => id == credentials.OperatorId ? null : $"'{id}' is not the operator ({credentials.OperatorId})", revocable: false);
        if (!check.IsValid)
        {
            ControlPlaneLog.AdminRefused(logger, context.Method, check.Failure == CallerFailure.NotAllowed ? $"caller is {check.Id}" : check.Reason!, context.Peer);
            throw check.ToRpcException("admin calls need the operator credential over mTLS");
        }
    }
}
