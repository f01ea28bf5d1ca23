using System.Security.Cryptography.X509Certificates;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>Operator calls on the CA's roots (<c>ztmctl ca status|rotate</c>); <see cref="OperatorOnlyInterceptor"/> has authenticated the caller.</summary>
internal sealed class CaAdminService(CaRotation rotation, ILogger<CaAdminService> logger) : CaAdmin.CaAdminBase
{
    public override Task<CaStatusResponse> Status(CaStatusRequest request, ServerCallContext context) => Task.FromResult(StatusOf(rotation));

    public override Task<CaStatusResponse> Rotate(CaRotateRequest request, ServerCallContext context)
    {
        try
        {
            rotation.Start("operator");
        }
        catch (RotationRefusedException e)
        {
            ControlPlaneLog.CaRotationRefused(logger, e.Message);
            throw new RpcException(new Status(StatusCode.FailedPrecondition, e.Message));
        }
        catch (IOException e)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"the rotation could not start, nothing changed: {e.Message}"));
        }
        catch (InvalidDataException e)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"the rotation could not start, nothing changed: {e.Message}"));
        }
        return Task.FromResult(StatusOf(rotation));
    }

    public static CaStatusResponse StatusOf(CaRotation rotation)
    {
        var state = rotation.State;
        var gate = rotation.Gate();
        var response = new CaStatusResponse
        {
            Phase = CaRotation.Name(state.Phase),
            StartedBy = state.StartedBy ?? "",
            BundleSequence = state.BundleSequence,
            WaitingFor = state.Phase == RotationPhase.None ? "" : gate.WaitingFor,
            PlugIn = rotation.IsPlugIn,
        };
        if (state.PhaseSince is { } since)
        {
            response.PhaseSince = Timestamp.FromDateTimeOffset(since);
        }
        if (gate.OpensAt is { } opensAt)
        {
            response.NextStepAt = Timestamp.FromDateTimeOffset(opensAt);
        }
        if (!rotation.IsPlugIn)
        {
            response.AutoRotateAt = Timestamp.FromDateTimeOffset(rotation.AutoRotateAt);
        }
        response.BlockedBy.AddRange(gate.Blockers);
        var inBundle = state.Roots.Select(RootFingerprint.Of).ToHashSet(StringComparer.Ordinal);
        response.Roots.Add(Root("current", state.Current, inBundle));
        if (state.Next is { } next)
        {
            response.Roots.Add(Root("next", next, inBundle));
        }
        if (state.Previous is { } previous)
        {
            response.Roots.Add(Root("previous", previous, inBundle));
        }
        var followers = rotation.Followers();
        foreach (var sidecar in followers.Sidecars)
        {
            response.Sidecars.Add(new CaSidecar
            {
                SpiffeId = sidecar.SpiffeId,
                Connected = sidecar.Connected,
                BundleSequence = sidecar.BundleSequence,
                CertificateSerial = sidecar.CertificateSerial,
                CertificateExpiresAt = Timestamp.FromDateTimeOffset(sidecar.CertificateExpiresAt),
                CertificateRoot = rotation.RoleOfSigner(sidecar.SignerKeyId),
                LastSeen = Timestamp.FromDateTimeOffset(sidecar.LastSeen),
                Replica = sidecar.Replica,
            });
        }
        (response.SidecarsCounted, response.SidecarsFollowing) = rotation.Following(followers, state.BundleSequence);
        foreach (var replica in followers.Replicas)
        {
            response.Replicas.Add(new CaReplica
            {
                Name = replica.Replica,
                BundleSequence = replica.BundleSequence,
                Sidecars = (uint)replica.Sidecars.Count,
                ReportedAt = replica.Problem is null ? Timestamp.FromDateTimeOffset(replica.RefreshedAt) : null,
                Problem = replica.Problem ?? "",
            });
        }
        foreach (var stale in followers.Stale)
        {
            response.Replicas.Add(new CaReplica { Name = stale.Replica, ReportedAt = Timestamp.FromDateTimeOffset(stale.UnchangedSince), Stale = true });
        }
        return response;
    }

    private static CaRoot Root(string role, X509Certificate2 certificate, HashSet<string> inBundle)
    {
        var fingerprint = RootFingerprint.Of(certificate);
        return new CaRoot
        {
            Role = role,
            Fingerprint = fingerprint,
            Subject = certificate.Subject,
            NotBefore = Timestamp.FromDateTimeOffset(certificate.NotBefore.ToUniversalTime()),
            NotAfter = Timestamp.FromDateTimeOffset(certificate.NotAfter.ToUniversalTime()),
            InBundle = inBundle.Contains(fingerprint),
        };
    }
}
