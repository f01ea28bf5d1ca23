using Grpc.Core;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.DecisionLog;

/// <summary>
/// Sends signed checkpoints to the control plane's Audit service in order, one call each over the sidecar's mTLS
/// channel; while the control plane is unreachable they wait (at most <see cref="MaxPending"/>: a newer checkpoint
/// covers everything an older one does, so the oldest go first) and are retried with backoff.
/// </summary>
internal sealed class CheckpointSender : IAsyncDisposable
{
    public const int MaxPending = 256;
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    private readonly Queue<ZeroTrustMesh.DecisionLog.Checkpoint> _pending = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Grpc.Net.Client.GrpcChannel _channel;
    private readonly Audit.AuditClient _client;
    private readonly TimeProvider _time;
    private readonly ILogger<CheckpointSender> _logger;
    private readonly CancellationTokenSource _stop = new();
    private TaskCompletionSource _drained = NewDrained();
    private Task? _loop;

    public CheckpointSender(SidecarOptions options, IdentityState state, TimeProvider time, ILogger<CheckpointSender> logger)
    {
        _time = time;
        _logger = logger;
        _channel = ControlPlaneChannel.Create(options.ControlPlane, () => state.Bundle ?? options.BootstrapBundle, () => state.Valid?.Certificate, time);
        _client = new Audit.AuditClient(_channel);
    }

    /// <summary>Checkpoints the control plane has accepted.</summary>
    public long Sent { get; private set; }

    public void Send(ZeroTrustMesh.DecisionLog.Checkpoint checkpoint)
    {
        lock (_pending)
        {
            if (_pending.Count == MaxPending)
            {
                _pending.Dequeue();
            }
            _pending.Enqueue(checkpoint);
            if (_drained.Task.IsCompleted)
            {
                _drained = NewDrained();
            }
        }
        _loop ??= Task.Run(SendLoopAsync);
        _signal.Release();
    }

    private async Task SendLoopAsync()
    {
        var backoff = TimeSpan.FromSeconds(1);
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await _signal.WaitAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            while (TryPeek(out var checkpoint))
            {
                try
                {
                    await _client.CheckpointAsync(CheckpointMapping.ToProto(checkpoint), deadline: DateTime.UtcNow + CallTimeout, cancellationToken: _stop.Token);
                    Sent++;
                    backoff = TimeSpan.FromSeconds(1);
                    lock (_pending)
                    {
                        if (_pending.TryPeek(out var head) && ReferenceEquals(head, checkpoint))
                        {
                            _pending.Dequeue();
                        }
                        if (_pending.Count == 0)
                        {
                            _drained.TrySetResult();
                        }
                    }
                }
                catch (RpcException e) when (e.StatusCode is StatusCode.InvalidArgument or StatusCode.PermissionDenied or StatusCode.Unauthenticated)
                {
                    // Refused for good (the message says why): retrying would be refused again.
                    SidecarLog.CheckpointRefused(_logger, checkpoint.Sequence, e.Status.Detail);
                    lock (_pending)
                    {
                        _pending.TryDequeue(out _);
                        if (_pending.Count == 0)
                        {
                            _drained.TrySetResult();
                        }
                    }
                }
                catch (RpcException e) when (!_stop.IsCancellationRequested)
                {
                    SidecarLog.CheckpointDeferred(_logger, checkpoint.Sequence, e.Status.Detail, backoff.TotalSeconds);
                    try
                    {
                        await Task.Delay(backoff, _time, _stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                    backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
                }
                catch (RpcException) when (_stop.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }

    private bool TryPeek(out ZeroTrustMesh.DecisionLog.Checkpoint checkpoint)
    {
        lock (_pending)
        {
            return _pending.TryPeek(out checkpoint!);
        }
    }

    /// <summary>Waits (on stop) until every pending checkpoint was sent, at most 5 seconds or until <paramref name="cancellation"/>.</summary>
    public async Task DrainAsync(CancellationToken cancellation)
    {
        Task drained;
        lock (_pending)
        {
            if (_pending.Count == 0)
            {
                return;
            }
            drained = _drained.Task;
        }
        try
        {
            await drained.WaitAsync(TimeSpan.FromSeconds(5), _time, cancellation);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            SidecarLog.CheckpointsUnsent(_logger, _pending.Count);
        }
    }

    private static TaskCompletionSource NewDrained() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_loop is not null)
        {
            await _loop;
        }
        _channel.Dispose();
        _stop.Dispose();
        _signal.Dispose();
    }
}
