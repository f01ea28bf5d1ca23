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
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or RotationRefusedException)
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

/// <summary>
/// With several replicas (Kubernetes): every replica follows the steps the leading one saves in the shared CA store
/// (<see cref="CaRotation.Refresh"/>), every <c>--ca-rotation-poll</c>, so its signer and the bundle its sidecars get stay
/// those of the phase. A rotation started on any replica (<c>ztmctl ca rotate</c>) reaches the leader the same way.
/// </summary>
internal sealed class CaRotationFollower(CaRotation rotation, ControlPlaneOptions options, TimeProvider time, ILogger<CaRotationFollower> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await Task.Delay(options.CaRotationPoll, time, stoppingToken);
                try
                {
                    rotation.Refresh();
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
                {
                    ControlPlaneLog.CaRotationFailed(logger, options.CaRotationPoll.TotalSeconds, $"cannot follow the rotation record: {e.Message}");
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
    }
}
