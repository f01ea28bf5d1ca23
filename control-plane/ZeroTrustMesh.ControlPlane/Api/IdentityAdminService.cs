using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>Operator identity calls; <see cref="OperatorOnlyInterceptor"/> has authenticated the caller.</summary>
internal sealed class IdentityAdminService(IJoinTokenStore tokens, Revoker revoker, ConfigStore config, ControlPlaneOptions options, ILogger<IdentityAdminService> logger) : IdentityAdmin.IdentityAdminBase
{
    private const string Operator = "operator";

    public override Task<RevokeResponse> Revoke(RevokeRequest request, ServerCallContext context)
    {
        try
        {
            var (state, entries, changed) = revoker.Revoke(request.Serial, request.SpiffeId, request.Reason, Operator);
            var response = new RevokeResponse { Version = state.Version, Changed = changed };
            response.Revocations.AddRange(entries.Select(e => e.ToProto()));
            return Task.FromResult(response);
        }
        catch (RevocationRefusedException e)
        {
            ControlPlaneLog.RevocationRefused(logger, e.Message);
            throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message));
        }
    }

    public override Task<ListRevocationsResponse> ListRevocations(ListRevocationsRequest request, ServerCallContext context)
    {
        var state = config.Current;
        var response = new ListRevocationsResponse { Version = state.Version };
        response.Revocations.AddRange(state.Revocations.Entries.Select(e => e.ToProto()));
        return Task.FromResult(response);
    }

    public override Task<CreateJoinTokenResponse> CreateJoinToken(CreateJoinTokenRequest request, ServerCallContext context)
    {
        var ttl = request.TtlSeconds == 0 ? options.JoinTokenTtl : TimeSpan.FromSeconds(request.TtlSeconds);
        if (ttl > ControlPlaneOptions.MaxJoinTokenTtl)
        {
            throw Refuse($"ttl {Durations.Format(ttl)} is longer than the maximum {Durations.Format(ControlPlaneOptions.MaxJoinTokenTtl)}");
        }
        if (string.IsNullOrEmpty(request.Namespace) || string.IsNullOrEmpty(request.ServiceAccount))
        {
            throw Refuse("namespace and service account are required");
        }
        var candidate = $"{SpiffeId.Scheme}{options.TrustDomain}/ns/{request.Namespace}/sa/{request.ServiceAccount}";
        if (!SpiffeId.TryParse(candidate, out var id, out var error)
            || !id.TryGetWorkload(out var ns, out var sa) || ns != request.Namespace || sa != request.ServiceAccount)
        {
            throw Refuse($"namespace '{request.Namespace}' and service account '{request.ServiceAccount}' do not form a valid SPIFFE ID: {error ?? "they may not contain '/'"}");
        }

        var (token, expiresAt) = tokens.Create(id, ttl);
        ControlPlaneLog.JoinTokenCreated(logger, id.Value, expiresAt);
        return Task.FromResult(new CreateJoinTokenResponse { Token = token, SpiffeId = id.Value, ExpiresAt = Timestamp.FromDateTimeOffset(expiresAt) });
    }

    private RpcException Refuse(string reason)
    {
        ControlPlaneLog.JoinTokenRefused(logger, reason);
        return new RpcException(new Status(StatusCode.InvalidArgument, reason));
    }
}
