using System.Threading.Channels;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Observations;

/// <summary>
/// One request as the inbound path saw it, for the control plane (issue 19, section 1). A struct of references the
/// request already holds (strings of the request and of the compiled stages), so recording one allocates nothing; the
/// reporter turns it into its proto form in the background.
/// </summary>
internal readonly record struct RequestObservation(
    DateTimeOffset At,
    string Caller,
    string? Subject,
    string Method,
    string Path,
    string? Template,
    int Port,
    int Status,
    bool Allowed,
    string? Policy,
    int Rule,
    SchemaVerdict Schema,
    long RequestBytes,
    long ResponseBytes,
    TimeSpan Duration,
    AuditOutcome Audit = default);

/// <summary>
/// The bounded queue between the inbound path and <see cref="ObservationReporter"/>: <see cref="Record"/> never waits and
/// never allocates; when the queue is full (the control plane is slow or away) the observation is dropped and counted
/// (<c>ztm_observations_dropped_total</c>, and the next batch says how many). With <c>--observations false</c> nothing is kept.
/// </summary>
internal sealed class ObservationBuffer
{
    private readonly Channel<RequestObservation>? _queue;
    private readonly SidecarMetrics _metrics;
    private TaskCompletionSource _batchReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _dropped;

    public ObservationBuffer(SidecarOptions options, SidecarMetrics metrics)
    {
        _metrics = metrics;
        Capacity = options.ObservationBuffer;
        // Wait mode, used only through TryWrite: a full queue refuses the write (DropWrite would report it as written).
        _queue = options.Observations
            ? Channel.CreateBounded<RequestObservation>(new BoundedChannelOptions(Capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait })
            : null;
    }

    public bool Enabled => _queue is not null;

    public int Capacity { get; }

    /// <summary>Observations waiting to be sent.</summary>
    public int Count => _queue?.Reader.Count ?? 0;

    /// <summary>Observations dropped since the last <see cref="TakeDropped"/>.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Called once per request, on its way out: queues the observation, or drops and counts it.</summary>
    public void Record(in RequestObservation observation)
    {
        if (_queue is null)
        {
            return;
        }
        if (!_queue.Writer.TryWrite(observation))
        {
            Interlocked.Increment(ref _dropped);
            _metrics.ObservationDropped();
            return;
        }
        if (_queue.Reader.Count == ObservationReporter.BatchSize)
        {
            Volatile.Read(ref _batchReady).TrySetResult(); // a full batch goes out before the second is up
        }
    }

    /// <summary>Waits until a batch is full or <paramref name="timeout"/> has passed.</summary>
    public async Task WaitForBatchAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellation)
    {
        var signal = Volatile.Read(ref _batchReady);
        if (signal.Task.IsCompleted)
        {
            Volatile.Write(ref _batchReady, signal = new(TaskCreationOptions.RunContinuationsAsynchronously)); // one waiter: the reporter
        }
        if (Count >= ObservationReporter.BatchSize)
        {
            return;
        }
        try
        {
            await signal.Task.WaitAsync(timeout, time, cancellation);
        }
        catch (TimeoutException)
        {
            // the second is up: send what there is
        }
    }

    /// <summary>Takes up to <paramref name="max"/> observations, oldest first.</summary>
    public int Drain(List<RequestObservation> into, int max)
    {
        var taken = 0;
        while (_queue is not null && taken < max && _queue.Reader.TryRead(out var observation))
        {
            into.Add(observation);
            taken++;
        }
        return taken;
    }

    /// <summary>The dropped count since the previous call, for the next batch.</summary>
    public long TakeDropped() => Interlocked.Exchange(ref _dropped, 0);

    /// <summary>Observations that were taken but could not be sent (the stream broke): counted as dropped, said in the next batch.</summary>
    public void Lost(long count)
    {
        Interlocked.Add(ref _dropped, count);
        _metrics.ObservationDropped(count);
    }
}
