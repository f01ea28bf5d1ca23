using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Proto.V1;
using TrustBundle = ZeroTrustMesh.Identity.TrustBundle;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>The workload-facing identity API: a thin adapter over <see cref="SvidIssuer"/>.</summary>
internal sealed class IdentityService(SvidIssuer issuer, CertificateAuthority ca) : Proto.V1.Identity.IdentityBase
{
    public override Task<SignCertificateResponse> SignCertificate(SignCertificateRequest request, ServerCallContext context) =>
        Task.FromResult(Respond(() => issuer.Sign(request.Csr.Span, request.JoinToken, context.Peer)));

    public override Task<SignCertificateResponse> RenewCertificate(RenewCertificateRequest request, ServerCallContext context) =>
        Task.FromResult(Respond(() => issuer.Renew(request.Csr.Span, PeerCertificate.Of(context), context.Peer)));

    public override async Task WatchTrustBundle(WatchTrustBundleRequest request, IServerStreamWriter<Proto.V1.TrustBundle> responseStream, ServerCallContext context)
    {
        // The bundle is fixed for the life of this process (a CA change takes a restart, which ends the
        // stream); the stream exists so that rotation can push a new bundle without a new contract.
        await responseStream.WriteAsync(ToProto(ca.Bundle), context.CancellationToken);
        try
        {
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            // client went away or the server is stopping
        }
    }

    private static SignCertificateResponse Respond(Func<IssuedSvid> issue)
    {
        IssuedSvid issued;
        try
        {
            issued = issue();
        }
        catch (IssuanceRefusedException e)
        {
            var code = e.Kind switch
            {
                RefusalKind.Unauthenticated => StatusCode.Unauthenticated,
                RefusalKind.PermissionDenied => StatusCode.PermissionDenied,
                _ => StatusCode.InvalidArgument,
            };
            throw new RpcException(new Status(code, e.Message));
        }
        var response = new SignCertificateResponse
        {
            SpiffeId = issued.Id.Value,
            TrustBundle = ToProto(issued.Bundle),
            ExpiresAt = Timestamp.FromDateTimeOffset(issued.Leaf.NotAfter),
            SerialNumber = issued.Leaf.Serial,
        };
        response.CertificateChain.Add(UnsafeByteOperations.UnsafeWrap(issued.Leaf.Der));
        response.CertificateChain.AddRange(issued.ChainAfterLeaf.Select(c => ByteString.CopyFrom(c.RawData)));
        return response;
    }

    internal static Proto.V1.TrustBundle ToProto(TrustBundle bundle)
    {
        var proto = new Proto.V1.TrustBundle { TrustDomain = bundle.TrustDomain, Sequence = bundle.Sequence };
        proto.Roots.AddRange(bundle.Roots.Select(r => ByteString.CopyFrom(r.RawData)));
        return proto;
    }
}
