using System.Runtime.InteropServices;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar;

/// <summary>
/// Hands memory back after a burst. The sidecar's GC (workstation, non-concurrent: the smallest idle footprint)
/// collects the oldest generation only when that generation's budget runs out, so a burst of load leaves its
/// in-flight requests' objects, promoted and then dead, on committed pages for as long as the pod lives: measured
/// at 1000 req/s after the capacity runs, 33-40 MB committed for a heap that a full collection shrinks to a few MB.
/// Every <see cref="Interval"/> the GC's committed memory is compared with the live data the last full collection
/// found; past <see cref="IsBloated"/>, one full compacting collection returns the difference to the OS, as Envoy's
/// shrink-heap overload action does for its allocator. A sidecar that has gone quiet (<see cref="IsIdleWithGarbage"/>)
/// is collected once too, so its last requests' garbage does not stay on committed pages until traffic returns, and
/// it hands back the code and C-heap memory the burst left (<see cref="TrimIfDue"/>). When the sidecar is first ready,
/// it releases what start-up left (<see cref="ReleaseStartupMemory"/>), and once more at the first quiet check after
/// that, when what follows readiness has run.
/// <para>
/// An idle sidecar reaches a steady state and stays there: a check counts only what the sidecar allocated since the
/// last one ended, never the trim's own work. It used to count it (the smaps reading was 1 MB of strings), so every
/// trim made the next interval look busy and the one after it "quiet again": an idle sidecar trimmed every 10-15 s
/// for good, its RSS swinging 24-30 MiB as each trim unmapped code the next seconds faulted back in.
/// </para>
/// </summary>
internal sealed class MemoryTrimmer(SidecarMetrics metrics, TimeProvider time, ILogger<MemoryTrimmer> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    /// <summary>Committed memory allowed beyond twice the live data: room for a few gen0 budgets (3-6 MB each).</summary>
    public const long Slack = 16L << 20;

    /// <summary>
    /// How long the last full collection's count of live data is believed. One that ran in the middle of a burst
    /// counted the burst's in-flight requests as live; without this the heap could stay at twice that for good.
    /// </summary>
    public static readonly TimeSpan LiveDataTrustedFor = TimeSpan.FromSeconds(20);

    /// <summary>Allocation in one <see cref="Interval"/> below which the sidecar counts as quiet (timers, scrapes, keep-alives).</summary>
    public const long QuietAllocation = 256L << 10;

    /// <summary>Allocated since the last collection, past which a quiet sidecar collects: gen0 pages it would keep until traffic returns.</summary>
    public const long IdleGarbage = 2L << 20;

    private long _lastFullIndex = -1;
    private long _lastFullSeen;
    private long _allocatedAtLastCheck = GC.GetTotalAllocatedBytes();
    private bool _activeUntilLastCheck;
    private long _startupReleasedAt = -1;

    /// <summary>
    /// More than twice the live data plus <see cref="Slack"/> (a heap that holds only its live data never trips it),
    /// or more than <see cref="Slack"/> once the live count is older than <see cref="LiveDataTrustedFor"/>.
    /// </summary>
    public static bool IsBloated(long committedBytes, long liveBytes, TimeSpan sinceLiveCounted) =>
        committedBytes > 2 * liveBytes + Slack || (committedBytes > Slack && sinceLiveCounted > LiveDataTrustedFor);

    /// <summary>
    /// Quiet for a whole interval with more than <see cref="IdleGarbage"/> allocated since the last collection: the
    /// requests that ended the activity left their objects on gen0 pages that no collection would visit (nothing
    /// allocates), measured at 4-5 MB of private memory after a hundred requests.
    /// </summary>
    public static bool IsIdleWithGarbage(long allocatedInInterval, long allocatedSinceLastCollection) =>
        allocatedInInterval < QuietAllocation && allocatedSinceLastCollection > IdleGarbage;

    /// <summary>
    /// Start-up (DI, Kestrel, the first certificate and policy) leaves megabytes of garbage that no gen0 budget at idle
    /// would ever collect, and megabytes of code it ran once mapped: collect the heap once (compacting, returning the
    /// freed pages) and unmap the code it ran (<see cref="CodePages"/>). Readiness is not the end of start-up's code:
    /// registration, the observation stream and the log line below run after it, so the first quiet check at least an
    /// <see cref="Interval"/> later hands back once more (<see cref="TrimIfDue"/>).
    /// </summary>
    public void ReleaseStartupMemory()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        var releasedKb = CodePages.Release();
        SidecarLog.StartupMemoryReleased(logger, GC.GetGCMemoryInfo().HeapSizeBytes / 1048576.0, releasedKb / 1024.0);
        Volatile.Write(ref _startupReleasedAt, time.GetTimestamp());
    }

    /// <summary>
    /// One check: collects (blocking, compacting, decommitting) when the GC holds far more than is alive, or when a
    /// quiet sidecar holds garbage from its last activity. The first quiet check after activity (or after the start-up
    /// release, <see cref="ReleaseStartupMemory"/>) also hands back what the burst left outside the GC heap: the C heap's
    /// freed blocks (OpenSSL's per-connection state: measured, the orders sidecar stayed at its new-connection peak of
    /// 55 MiB through the next 1000 req/s run without this) and, last, the code it ran (<see cref="CodePages"/>).
    /// </summary>
    /// <remarks>
    /// A sidecar under load keeps its code mapped (it would fault straight back in). The hand-back waits for the
    /// transition to quiet, not for garbage: a collection under load at the end of a burst often takes the garbage
    /// first, and then nothing would release the rest.
    /// </remarks>
    public bool TrimIfDue()
    {
        var last = GC.GetGCMemoryInfo(GCKind.Any);
        var full = GC.GetGCMemoryInfo(GCKind.FullBlocking);
        if (full.Index != _lastFullIndex)
        {
            (_lastFullIndex, _lastFullSeen) = (full.Index, time.GetTimestamp());
        }
        // What survived the last full collection is the live data; before any, the heap as the last GC left it.
        var live = full.Index > 0 ? full.PromotedBytes : last.HeapSizeBytes;
        var allocated = GC.GetTotalAllocatedBytes();
        var allocatedInInterval = allocated - _allocatedAtLastCheck;
        _allocatedAtLastCheck = allocated;
        var quiet = allocatedInInterval < QuietAllocation;
        var startupSettled = quiet && Volatile.Read(ref _startupReleasedAt) is >= 0 and var released && time.GetElapsedTime(released) >= Interval
            && Interlocked.CompareExchange(ref _startupReleasedAt, -1, released) == released;
        var wentQuiet = (_activeUntilLastCheck || startupSettled) && quiet;
        _activeUntilLastCheck = !quiet;
        if (!wentQuiet
            && !IsIdleWithGarbage(allocatedInInterval, GC.GetTotalMemory(forceFullCollection: false) - last.HeapSizeBytes)
            // A stale count of live data matters only under load: going quiet collects (and recounts) anyway, and
            // counted as stale at idle it collected a heap of more than 16 MB every 25 s for as long as it idled.
            && !IsBloated(last.TotalCommittedBytes, live, quiet ? TimeSpan.Zero : time.GetElapsedTime(_lastFullSeen)))
        {
            return false;
        }
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        if (wentQuiet)
        {
            GC.WaitForPendingFinalizers(); // connections' SafeHandles free their OpenSSL state
            NativeHeap.Trim();
            // Last: the collection's stack walks and the finalizers' OpenSSL calls run code of their own, which a
            // release before them would have had faulted straight back in (measured: 4-5 MB of file pages within 2 s).
            CodePages.Release();
        }
        metrics.MemoryTrimmed();
        // What this trim allocated is not the sidecar's traffic: counted, it made the next check look busy.
        _allocatedAtLastCheck = GC.GetTotalAllocatedBytes();
        return true;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                TrimIfDue();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>glibc's <c>malloc_trim</c>: freed blocks in every arena go back to the OS. Other C libraries
    /// (musl) have no such call and nothing to do.</summary>
    private static class NativeHeap
    {
        public static void Trim()
        {
            try
            {
                _ = MallocTrim(0);
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
            }
        }

        [DllImport("libc", EntryPoint = "malloc_trim")]
        private static extern int MallocTrim(nuint pad);
    }
}
