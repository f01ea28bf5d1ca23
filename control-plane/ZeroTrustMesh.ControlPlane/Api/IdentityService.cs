using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Proto.V1;
using TrustBundle = ZeroTrustMesh.Identity.TrustBundle;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>The workload-facing identity API: a thin adapter over <see cref="SvidIssuer"/>.</summary>
internal sealed class IdentityService(SvidIssuer issuer) : Proto.V1.Identity.IdentityBase
{
    public override async Task<SignCertificateResponse> SignCertificate(SignCertificateRequest request, ServerCallContext context)
    {
        try
        {
            return Respond(await issuer.SignAsync(request.Csr.Memory, ProofOf(request), context.Peer, context.CancellationToken));
        }
        catch (IssuanceRefusedException e)
        {
            throw Refusal(e);
        }
        catch (AttestationUnavailableException e)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, e.Message));
        }
    }

    public override Task<SignCertificateResponse> RenewCertificate(RenewCertificateRequest request, ServerCallContext context)
    {
        try
        {
            return Task.FromResult(Respond(issuer.Renew(request.Csr.Span, PeerCertificate.Of(context), context.Peer)));
        }
        catch (IssuanceRefusedException e)
        {
            throw Refusal(e);
        }
    }

    /// <summary>The proof the request carries, by its kind; none (or an empty one) is null.</summary>
    private static IdentityProof? ProofOf(SignCertificateRequest request) => request.ProofCase switch
    {
        SignCertificateRequest.ProofOneofCase.JoinToken when request.JoinToken.Length > 0 => new JoinTokenProof(request.JoinToken),
        SignCertificateRequest.ProofOneofCase.ServiceAccountToken when request.ServiceAccountToken.Length > 0 => new ServiceAccountTokenProof(request.ServiceAccountToken),
        _ => null,
    };

    private static RpcException Refusal(IssuanceRefusedException e) => new(new Status(e.Kind switch
    {
        RefusalKind.Unauthenticated => StatusCode.Unauthenticated,
        RefusalKind.PermissionDenied => StatusCode.PermissionDenied,
        _ => StatusCode.InvalidArgument,
    }, e.Message));

    private static SignCertificateResponse Respond(IssuedSvid issued)
    {
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
