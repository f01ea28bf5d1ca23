using ZeroTrustMesh.ControlPlane.Coordination;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// Takes the CA rotation's steps (<see cref="CaRotation.Advance"/>) while this replica leads: at start (a phase saved
/// before a restart resumes), then every <c>--ca-rotation-poll</c>. Also starts a rotation by itself when the signing
/// root nears expiry. A step that could not be saved is logged and tried again at the next poll.
/// </summary>
internal sealed class CaRotationService(CaRotation rotation, ControlPlaneOptions options, TimeProvider time, IReplicaLeadership leadership, ILogger<CaRotationService> logger)
    : LeaderOnlyService(leadership)
{
    protected override async Task RunAsync(CancellationToken leading)
    {
        if (rotation.IsPlugIn)
        {
            return; // the operator rotates their own CA
        }
        try
        {
            while (!leading.IsCancellationRequested)
            {
                try
                {
                    rotation.Advance();
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or RotationRefusedException)
                {
                    ControlPlaneLog.CaRotationFailed(logger, options.CaRotationPoll.TotalSeconds, e.Message);
                }
                await Task.Delay(options.CaRotationPoll, time, leading);
            }
        }
        catch (OperationCanceledException) when (leading.IsCancellationRequested)
        {
            // leadership ended or the control plane is stopping
        }
    }
}
