using System.Threading.Channels;
using ZeroTrustMesh.DecisionLog;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.DecisionLog;

/// <summary>Where and how the decision log is written (<c>--decision-log DIR</c> and its companions); null: off.</summary>
internal sealed record DecisionLogSettings(string Directory, long SegmentBytes, long CheckpointRecords, TimeSpan CheckpointInterval)
{
    public const long DefaultSegmentBytes = 64L << 20;
    public const long DefaultCheckpointRecords = 10_000;

    /// <summary>Where the records are also exported as OpenTelemetry logs (<c>--decision-log-otlp</c>); null: not exported.</summary>
    public OtlpExportSettings? Export { get; init; }
}

/// <summary>
/// Every inbound authorization decision, hash-chained on disk (<see cref="ChainWriter"/>) and checkpointed to the
/// control plane (<see cref="CheckpointSender"/>). Off the request path:
/// 1. <see cref="Record"/> copies the decision into a bounded queue and returns; when the queue is full the decision
///    is counted as lost, never waited for;
/// 2. one writer drains the queue: before the next decision it writes a gap record saying how many were lost, so the
///    chain itself says where it is incomplete; it flushes to the file whenever the queue is empty;
/// 3. every <see cref="DecisionLogSettings.CheckpointRecords"/> records or <see cref="DecisionLogSettings.CheckpointInterval"/>
///    (when there are new records) it flushes, signs a checkpoint with the current SVID's key and hands it to the sender;
///    on stop it writes what is queued and makes a last checkpoint.
/// Each record written is also handed to <see cref="OtlpExport"/> when <c>--decision-log-otlp</c> names a collector
/// (the exporter is registered only then; without it there is none).
/// The directory is opened at the first decision: the SVID names the workload in each segment's open record.
/// </summary>
internal sealed class DecisionLogWriter : IHostedService, IAsyncDisposable
{
    private const int QueueLength = 16_384;

    // Wait mode, used only through TryWrite: a full queue refuses the write, so the decision is counted as lost and the
    // chain gets its gap record (DropWrite would report it as written and the loss would go unrecorded).
    private readonly Channel<Decision> _queue = Channel.CreateBounded<Decision>(
        new BoundedChannelOptions(QueueLength) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly DecisionLogSettings? _settings;
    private readonly IdentityState _identity;
    private readonly CheckpointSender _sender;
    private readonly OtlpExport? _export;
    private readonly TimeProvider _time;
    private readonly Telemetry.SidecarMetrics _metrics;
    private readonly ILogger<DecisionLogWriter> _logger;
    private ITimer? _ticker;
    private Task _writer = Task.CompletedTask;
    private long _lost;
    private int _checkpointDue;
    private ChainWriter? _chain;
    private long _checkpointed;

    public DecisionLogWriter(SidecarOptions options, IdentityState identity, CheckpointSender sender, TimeProvider time, Telemetry.SidecarMetrics metrics, ILogger<DecisionLogWriter> logger,
        OtlpExport? export = null)
    {
        _settings = options.DecisionLog;
        _identity = identity;
        _sender = sender;
        _export = export;
        _time = time;
        _metrics = metrics;
        _logger = logger;
    }

    public bool Enabled => _settings is not null;

    /// <summary>The last record written and checkpointed (for tests and the admin dump).</summary>
    public long Checkpointed => Interlocked.Read(ref _checkpointed);

    /// <summary>
    /// Logs the decision on <paramref name="context"/>'s request: its caller, method, path and port, the status it
    /// got, whether it reached the app (<paramref name="refused"/>: no), and the AuthorizationPolicy rule that decided,
    /// when authorization ran.
    /// </summary>
    /// <param name="request">The request record once the stages ran; null for a refusal before them.</param>
    public void Record(HttpContext context, InboundRequest? request, int status, bool refused, string? reason)
    {
        if (_settings is null)
        {
            return;
        }
        var authorization = request?.Authorization;
        var decision = new Decision(_time.GetUtcNow(),
            context.Features.Get<PeerIdentityFeature>()?.Id.Value ?? InboundRequest.PlaintextCaller,
            context.Request.Method, request?.Path ?? context.Request.Path.Value ?? "", request?.Port ?? 0, status, !refused,
            authorization?.Policy, authorization?.Rule ?? -1, reason);
        if (!_queue.Writer.TryWrite(decision))
        {
            Interlocked.Increment(ref _lost);
            _metrics.DecisionLogLost();
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_settings is not null)
        {
            _export?.Start();
            _writer = Task.Run(WriteLoopAsync, CancellationToken.None);
            _ticker = _time.CreateTimer(_ =>
            {
                Interlocked.Exchange(ref _checkpointDue, 1);
                _queue.Writer.TryWrite(default); // wakes an idle writer; a full queue means it is awake anyway
            }, null, _settings.CheckpointInterval, _settings.CheckpointInterval);
        }
        return Task.CompletedTask;
    }

    private async Task WriteLoopAsync()
    {
        var settings = _settings!;
        while (await _queue.Reader.WaitToReadAsync())
        {
            try
            {
                while (_queue.Reader.TryRead(out var decision))
                {
                    if (decision.Caller is null)
                    {
                        continue; // the ticker's wake-up
                    }
                    var chain = _chain ??= Open(settings);
                    if (Interlocked.Exchange(ref _lost, 0) is > 0 and var lost)
                    {
                        chain.AppendGap(decision.Time, lost);
                        _export?.OfferGap(decision.Time, chain.Chain, chain.Sequence, chain.Hash, lost);
                    }
                    chain.Append(decision);
                    _export?.Offer(decision, chain.Chain, chain.Sequence, chain.Hash);
                    if (chain.Sequence - Checkpointed >= settings.CheckpointRecords)
                    {
                        Checkpoint(chain);
                    }
                }
                if (_chain is { } open)
                {
                    open.Flush();
                    if (Interlocked.Exchange(ref _checkpointDue, 0) == 1 && open.Sequence > Checkpointed)
                    {
                        Checkpoint(open);
                    }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
            {
                // The disk is full or the directory unusable: say so and count what is not written; the chain stays
                // where it was, and the records that could not be written show up as a gap once writing works again.
                SidecarLog.DecisionLogFailed(_logger, settings.Directory, e.Message);
                while (_queue.Reader.TryRead(out var dropped))
                {
                    if (dropped.Caller is not null)
                    {
                        Interlocked.Increment(ref _lost);
                        _metrics.DecisionLogLost();
                    }
                }
                _chain?.Dispose();
                _chain = null;
            }
        }
    }

    private ChainWriter Open(DecisionLogSettings settings)
    {
        var workload = _identity.Current?.Id.Value ?? throw new InvalidDataException("no SVID yet to name the workload");
        var chain = ChainWriter.Open(settings.Directory, workload, settings.SegmentBytes);
        Interlocked.Exchange(ref _checkpointed, chain.Sequence);
        SidecarLog.DecisionLogOpened(_logger, settings.Directory, chain.Chain, chain.Sequence + 1);
        return chain;
    }

    /// <summary>Makes the file durable up to the last record, then signs (sequence, hash, time, segment) and queues it for the control plane.</summary>
    private void Checkpoint(ChainWriter chain)
    {
        chain.Flush(durable: true);
        if (_identity.Current is not { } identity)
        {
            return;
        }
        var checkpoint = ZeroTrustMesh.DecisionLog.Checkpoint.Sign(identity.Id.Value, chain.Chain, chain.Sequence, chain.Hash, _time.GetUtcNow(), chain.Segment,
            identity.Certificate, identity.Intermediates);
        Interlocked.Exchange(ref _checkpointed, chain.Sequence);
        _sender.Send(checkpoint);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_settings is null)
        {
            return;
        }
        _ticker?.Dispose();
        _queue.Writer.TryComplete();
        await _writer;
        if (_chain is { } chain)
        {
            if (chain.Sequence > Checkpointed)
            {
                Checkpoint(chain);
            }
            chain.Dispose();
            _chain = null;
        }
        await Task.WhenAll(_sender.DrainAsync(cancellationToken), _export?.StopAsync(cancellationToken) ?? Task.CompletedTask);
    }

    public async ValueTask DisposeAsync()
    {
        _ticker?.Dispose();
        _queue.Writer.TryComplete();
        await _writer;
        _chain?.Dispose(); // the exporter, when there is one, is the container's to dispose (after this writer: it was created first)
    }
}
