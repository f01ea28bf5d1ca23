using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// Drops revocations once every certificate they cover has expired, so the list stays bounded: at start (entries that
/// expired while no replica was pruning), then on a timer set for the next expiry. Leader-only: with several replicas
/// sharing one list, one of them prunes.
/// </summary>
internal sealed class RevocationPruner(IRevocationStore store, ConfigStore config, TimeProvider time, IReplicaLeadership leadership, ILogger<RevocationPruner> logger)
    : LeaderOnlyService(leadership)
{
    /// <summary>The longest the timer waits, so that a wall-clock jump cannot postpone pruning for long.</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromHours(1);

    /// <summary>After a failed prune (the list could not be stored), the next try.</summary>
    public static readonly TimeSpan RetryAfterFailure = TimeSpan.FromMinutes(1);

    /// <summary>The timer while this replica leads; null otherwise.</summary>
    private volatile ITimer? _timer;

    protected override async Task RunAsync(CancellationToken leading)
    {
        using var timer = time.CreateTimer(_ => Prune(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _timer = timer;
        store.Changed += OnChanged;
        try
        {
            Prune();
            await Task.Delay(Timeout.Infinite, leading);
        }
        catch (OperationCanceledException) when (leading.IsCancellationRequested)
        {
            // leadership ended or the control plane is stopping
        }
        finally
        {
            store.Changed -= OnChanged;
            _timer = null;
        }
    }

    private void OnChanged(RevocationChange change) => Schedule(change.List.NextExpiry);

    /// <summary>Drops the entries whose certificates have all expired (a new version if any was); never throws: it runs on a timer.</summary>
    private void Prune()
    {
        try
        {
            IReadOnlyList<Revocation> dropped = [];
            store.Revise(list => (list.Prune(time.GetUtcNow(), out dropped), [.. dropped.Select(d => d.Subject)]), "expire", "controlplane", null);
            if (dropped.Count > 0)
            {
                ControlPlaneLog.RevocationsExpired(logger, dropped.Count, config.Current.Version);
            }
            Schedule(store.Current.NextExpiry);
        }
        catch (Exception e)
        {
            ControlPlaneLog.RevocationPruneFailed(logger, e.Message, RetryAfterFailure.TotalSeconds);
            _timer?.Change(RetryAfterFailure, Timeout.InfiniteTimeSpan);
        }
    }

    private void Schedule(DateTimeOffset? next)
    {
        if (next is not { } at)
        {
            _timer?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            return;
        }
        var due = at - time.GetUtcNow();
        _timer?.Change(due < TimeSpan.Zero ? TimeSpan.Zero : due > MaxWait ? MaxWait : due, Timeout.InfiniteTimeSpan);
    }
}
