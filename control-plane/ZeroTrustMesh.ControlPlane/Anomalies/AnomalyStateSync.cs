using ZeroTrustMesh.ControlPlane.Coordination;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>
/// Keeps the detector's state beyond one process and one replica, on every replica:
/// 1. at start, the stored state is taken (<see cref="AnomalyDetector.Import"/>): a restart lifts no restriction and
///    forgets no baseline;
/// 2. then every <see cref="AnomalyOptions.SyncInterval"/> (the window by default):
///    - the leader folds in what the other replicas' sidecars served (<see cref="IAnomalyCountExchange"/>), and stores
///      its state when it changed;
///    - a replica that does not lead hands over its counts, and takes the leader's state: its sidecars get the same
///      restrictions (<see cref="AnomalyResponder"/> runs on every replica), and on becoming leader it has the baselines.
/// 3. on stop, the leader stores its state once more.
/// A store or exchange that fails is logged (once per reason) and tried again at the next interval.
/// </summary>
internal sealed class AnomalyStateSync(
    AnomalyDetector detector, IAnomalyStateStore store, AnomalyOptions options, IReplicaLeadership leadership, TimeProvider time, ILogger<AnomalyStateSync> logger,
    IAnomalyCountExchange? exchange = null) : BackgroundService
{
    private string _lastFailure = "";
    private DateTimeOffset _takenAt = DateTimeOffset.MinValue;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (await store.LoadAsync(cancellationToken) is { } state)
            {
                detector.Import(state);
                _takenAt = state.SavedAt;
                AnomalyLog.StateLoaded(logger, store.Location, state.Tracks.Count, state.Tracks.Count(t => t.State != AnomalyState.Normal), state.SavedAt);
            }
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            AnomalyLog.StateNotLoaded(logger, store.Location, e.Message);
        }
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = options.SyncInterval ?? options.Window;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await Task.Delay(interval, time, stoppingToken);
                await SyncAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        if (leadership.IsLeading && detector.Export() is { } state)
        {
            await SaveAsync(state, cancellationToken);
        }
    }

    /// <summary>One round (the loop calls it every interval; tests call it directly).</summary>
    public async Task SyncAsync(CancellationToken cancellation)
    {
        if (leadership.IsLeading)
        {
            // What this replica counted before it led (its own sidecars: no other leader will take them now).
            if (detector.TakeForwarded() is { Counts.Count: > 0 } own)
            {
                detector.Fold(own.Counts);
            }
            if (exchange is not null)
            {
                await TryAsync(async () => detector.Fold(await exchange.CollectAsync(_takenAt, cancellation)));
            }
            detector.Tick();
            if (detector.Export() is { } state)
            {
                await SaveAsync(state, cancellation);
            }
            return;
        }
        if (exchange is not null)
        {
            var (counts, dropped) = detector.TakeForwarded();
            await TryAsync(() => exchange.PublishAsync(counts, dropped, cancellation));
        }
        await TryAsync(async () =>
        {
            if (await store.LoadAsync(cancellation) is { } state && state.SavedAt > _takenAt)
            {
                detector.Import(state);
                _takenAt = state.SavedAt;
            }
        });
    }

    private Task SaveAsync(AnomalyStateDocument state, CancellationToken cancellation) => TryAsync(async () =>
    {
        await store.SaveAsync(state, cancellation);
        if (state.LeftOut > 0)
        {
            AnomalyLog.StateTruncated(logger, store.Location, state.Tracks.Count, state.LeftOut);
        }
    });

    private async Task TryAsync(Func<Task> step)
    {
        try
        {
            await step();
            _lastFailure = "";
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            if (e.Message != _lastFailure)
            {
                _lastFailure = e.Message;
                AnomalyLog.SyncFailed(logger, e.Message);
            }
        }
    }
}
