namespace ZeroTrustMesh.ControlPlane.Coordination;

/// <summary>
/// The one seam for work that only one control-plane replica may do (pruning revocations, the policy status writes of
/// KubernetesPolicySource; CA rotation later). Standalone there is one replica and it always leads; in Kubernetes a <c>coordination.k8s.io</c>
/// Lease decides, and an implementation of this interface is all that changes.
/// </summary>
internal interface IReplicaLeadership
{
    /// <summary>
    /// Runs <paramref name="work"/> while this replica leads. The token it gets is cancelled when leadership is lost
    /// (the work runs again once it is regained) or when <paramref name="stopping"/> fires; the returned task ends
    /// after <paramref name="stopping"/>.
    /// </summary>
    Task RunWhileLeadingAsync(Func<CancellationToken, Task> work, CancellationToken stopping);

    /// <summary>This replica's name among the replicas (the pod's name in Kubernetes).</summary>
    string Identity => Environment.MachineName;

    /// <summary>Whether this replica leads now (the metric <c>ztm_controlplane_leader</c>).</summary>
    bool IsLeading => true;

    /// <summary>The replica that leads, as this one knows it; null while no leader is known.</summary>
    string? Leader => Identity;
}

/// <summary>One process, one replica: it always leads, from start to stop.</summary>
internal sealed class StandaloneLeadership : IReplicaLeadership
{
    public Task RunWhileLeadingAsync(Func<CancellationToken, Task> work, CancellationToken stopping) => work(stopping);
}

/// <summary>
/// A hosted service whose work runs only while this replica leads. The work starts inside
/// <see cref="StartAsync"/> (up to its first wait) when leadership is already held, as it always is standalone.
/// </summary>
internal abstract class LeaderOnlyService(IReplicaLeadership leadership) : IHostedService, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private Task _running = Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _running = leadership.RunWhileLeadingAsync(RunAsync, _stopping.Token);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        try
        {
            await _running.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // stopped, or the host gave up waiting
        }
    }

    /// <summary>The leader-only work; <paramref name="leading"/> is cancelled when leadership ends or the host stops.</summary>
    protected abstract Task RunAsync(CancellationToken leading);

    public void Dispose()
    {
        _stopping.Cancel();
        _stopping.Dispose();
    }
}
