using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.DecisionLog;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Audit;

/// <summary>
/// Takes a sidecar's signed decision-log checkpoint: the caller (its SVID over mTLS) must be the workload the
/// checkpoint is for, and the certificate in it a valid SVID of that workload under this CA's roots (current or
/// previous, during a rotation) whose key made the signature. Kept in <see cref="ICheckpointStore"/>.
/// </summary>
internal sealed class AuditService(ICheckpointStore store, WorkloadCaller caller, CertificateAuthority ca) : Proto.V1.Audit.AuditBase
{
    public override async Task<CheckpointAck> Checkpoint(DecisionLogCheckpoint request, ServerCallContext context)
    {
        var identity = caller.Require(context).Id;
        DecisionLog.Checkpoint checkpoint;
        try
        {
            checkpoint = CheckpointMapping.FromProto(request);
        }
        catch (FormatException e)
        {
            throw Invalid($"checkpoint refused: {e.Message}");
        }
        if (checkpoint.Workload != identity.Value)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"'{identity}' may send checkpoints only of its own log, not of '{checkpoint.Workload}'"));
        }
        if (checkpoint.Chain.Length != 32 || !checkpoint.Chain.All(char.IsAsciiHexDigitLower))
        {
            throw Invalid("checkpoint refused: chain must be 32 lower-case hex digits");
        }
        if (ChainWriter.FirstSequenceOf(checkpoint.Segment) is not { } first || first > checkpoint.Sequence)
        {
            throw Invalid($"checkpoint refused: segment '{checkpoint.Segment}' is not a segment name that can hold record {checkpoint.Sequence}");
        }
        if (checkpoint.Problem(ca.Bundle, ca.Time.GetUtcNow()) is { } problem)
        {
            throw Invalid($"checkpoint refused: {problem}");
        }
        try
        {
            return new CheckpointAck { Stored = (uint)await store.AddAsync(checkpoint, context.CancellationToken) };
        }
        catch (IOException e)
        {
            // The sidecar keeps the checkpoint and sends it again.
            throw new RpcException(new Status(StatusCode.Unavailable, $"checkpoint not stored: {e.Message}"));
        }
    }

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}

/// <summary>Operator calls: the checkpoints of a workload.</summary>
internal sealed class AuditAdminService(ICheckpointStore store) : AuditAdmin.AuditAdminBase
{
    public override async Task<ListCheckpointsResponse> ListCheckpoints(ListCheckpointsRequest request, ServerCallContext context)
    {
        if (!SpiffeId.TryParse(request.Workload, out _, out var error))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"workload '{request.Workload}' is not a SPIFFE ID: {error}"));
        }
        var response = new ListCheckpointsResponse();
        try
        {
            response.Checkpoints.AddRange((await store.ListAsync(request.Workload, context.CancellationToken)).Select(CheckpointMapping.ToProto));
        }
        catch (IOException e)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"checkpoints cannot be read: {e.Message}"));
        }
        return response;
    }
}
