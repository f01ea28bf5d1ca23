using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Prometheus;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Tests;

/// <summary>The GC's own decisions are process-wide: nothing else in this assembly runs beside these tests.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GarbageCollectorCollection
{
    public const string Name = "process-wide GC and allocation figures";
}

[Collection(GarbageCollectorCollection.Name)]
public sealed class MemoryTrimmerTests
{
    private const long MiB = 1 << 20;

    [Theory]
    [InlineData(3 * MiB, 10 * MiB, 1, false)]   // idle or steady: a few MB alive, a gen0 budget allocated
    [InlineData(3 * MiB, 22 * MiB, 1, false)]   // exactly twice the live data plus the slack
    [InlineData(3 * MiB, 40 * MiB, 1, true)]    // after a burst: promoted garbage on committed pages
    [InlineData(40 * MiB, 90 * MiB, 19, false)] // a large live set (a big policy) is not garbage
    [InlineData(40 * MiB, 97 * MiB, 1, true)]
    [InlineData(40 * MiB, 90 * MiB, 21, true)]  // ... unless it was counted mid-burst, a while ago
    [InlineData(3 * MiB, 10 * MiB, 21, false)]  // a quiet heap is never collected just because time passed
    public void Only_memory_well_beyond_the_live_data_counts_as_bloat(long live, long committed, int secondsSinceCounted, bool bloated) =>
        Assert.Equal(bloated, MemoryTrimmer.IsBloated(committed, live, TimeSpan.FromSeconds(secondsSinceCounted)));

    [Theory]
    [InlineData(100 << 10, 3 * MiB, true)]   // quiet now, a few MB of the last requests' garbage
    [InlineData(100 << 10, 1 * MiB, false)]  // quiet, and nothing worth a collection
    [InlineData(5 * MiB, 5 * MiB, false)]    // still busy: gen0 collections will come anyway
    public void A_quiet_sidecar_collects_what_its_last_requests_left(long allocatedInInterval, long sinceLastCollection, bool collect) =>
        Assert.Equal(collect, MemoryTrimmer.IsIdleWithGarbage(allocatedInInterval, sinceLastCollection));

    [Fact]
    public async Task Garbage_left_when_traffic_stops_is_collected_once_the_sidecar_is_quiet()
    {
        var time = new FakeTimeProvider();
        var metrics = new SidecarMetrics(new IdentityState(time));
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        var trimmer = new MemoryTrimmer(metrics, time, NullLogger<MemoryTrimmer>.Instance);
        // The last requests' garbage, with no collection in between (the region guarantees it; starting it may collect).
        Assert.True(GC.TryStartNoGCRegion(8 * MiB));
        var collections = GC.CollectionCount(0);
        AllocateGarbage(4 * MiB);
        GC.EndNoGCRegion();
        using var code = new FileMapping(1 << 20); // code the last requests ran
        code.Read();

        Assert.False(trimmer.TrimIfDue()); // busy during this interval
        Assert.Equal(collections, GC.CollectionCount(0));
        Assert.True(trimmer.TrimIfDue());  // quiet for one, garbage since the last collection
        Assert.True(GC.GetTotalMemory(forceFullCollection: false) - GC.GetGCMemoryInfo().HeapSizeBytes < MemoryTrimmer.IdleGarbage);
        Assert.Equal(0, code.PresentPages()); // ... and the code it ran is unmapped
        Assert.False(trimmer.TrimIfDue()); // and only once
        using var exported = new MemoryStream();
        await metrics.Registry.CollectAndExportAsTextAsync(exported);
        Assert.Contains("ztm_memory_trims_total 1", System.Text.Encoding.UTF8.GetString(exported.ToArray()), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_up_is_released_when_the_sidecar_is_ready_and_once_more_when_it_has_settled()
    {
        var time = new FakeTimeProvider();
        var metrics = new SidecarMetrics(new IdentityState(time));
        using var code = new FileMapping(1 << 20); // start-up's code, then what runs after readiness
        code.Touch();
        var pages = (1 << 20) / Environment.SystemPageSize;
        var trimmer = new MemoryTrimmer(metrics, time, NullLogger<MemoryTrimmer>.Instance);

        trimmer.ReleaseStartupMemory();
        Assert.Equal(0, code.PresentPages());
        code.Touch(); // registration, the observation stream, the first heartbeat
        Assert.False(trimmer.TrimIfDue()); // quiet, but start-up ended less than an interval ago
        Assert.Equal(pages, code.PresentPages());

        time.Advance(MemoryTrimmer.Interval);
        Assert.True(trimmer.TrimIfDue()); // settled: handed back once more
        Assert.Equal(0, code.PresentPages());

        code.Touch(); // what idling runs stays mapped: an idle sidecar does not trim again
        var trims = QuietMinute(trimmer, time);
        if (trims == 0)
        {
            Assert.Equal(pages, code.PresentPages());
        }
        using var exported = new MemoryStream();
        await metrics.Registry.CollectAndExportAsTextAsync(exported);
        Assert.Contains($"ztm_memory_trims_total {1 + trims}", System.Text.Encoding.UTF8.GetString(exported.ToArray()), StringComparison.Ordinal);
    }

    [Fact]
    public void A_sidecar_gone_quiet_trims_once_and_then_stays_put_for_a_minute()
    {
        var time = new FakeTimeProvider();
        var metrics = new SidecarMetrics(new IdentityState(time));
        var trimmer = new MemoryTrimmer(metrics, time, NullLogger<MemoryTrimmer>.Instance);
        AllocateGarbage(1 * MiB); // the last requests
        Assert.False(trimmer.TrimIfDue());

        time.Advance(MemoryTrimmer.Interval);
        Assert.True(trimmer.TrimIfDue()); // gone quiet: the hand-back
        // The hand-back's own work (reading smaps, collecting, finalizers) is not traffic: the checks of the next
        // minute find the sidecar as quiet as it is.
        QuietMinute(trimmer, time);
    }

    [Fact]
    public void A_large_live_heap_is_not_collected_again_and_again_while_idle()
    {
        var time = new FakeTimeProvider();
        var metrics = new SidecarMetrics(new IdentityState(time));
        var live = new List<byte[]>(); // a big policy: more than the 16 MB of slack committed, all of it alive
        for (long allocated = 0; allocated < 24 * MiB; allocated += 8192)
        {
            live.Add(new byte[8192]);
        }
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        Assert.True(GC.GetGCMemoryInfo().TotalCommittedBytes > MemoryTrimmer.Slack);
        var trimmer = new MemoryTrimmer(metrics, time, NullLogger<MemoryTrimmer>.Instance);

        // Twenty seconds on, the live count is stale; at idle that is no reason to collect (it was, every 25 s).
        QuietMinute(trimmer, time);
        GC.KeepAlive(live);
    }

    /// <summary>
    /// Twelve checks, 5 s apart, with nothing of the test's own in between; returns how many trimmed. This process
    /// is not a quiet sidecar (other test classes' servers and timers may still be winding down), so a trim is allowed
    /// where the process, outside the trimmer, allocated enough to justify it: 256 KB in the interval before (the
    /// sidecar was busy and went quiet) or 2 MB since the last check that trimmed. A trim whose only cause is the
    /// previous trim's own work fails the test.
    /// </summary>
    private static int QuietMinute(MemoryTrimmer trimmer, FakeTimeProvider time)
    {
        var outside = new List<long>();
        var trims = 0;
        var sinceTrim = 0L;
        var end = GC.GetTotalAllocatedBytes();
        for (var check = 0; check < 12; check++)
        {
            time.Advance(MemoryTrimmer.Interval);
            var start = GC.GetTotalAllocatedBytes();
            outside.Add(start - end);
            sinceTrim += start - end;
            if (trimmer.TrimIfDue())
            {
                Assert.True((check >= 1 && outside[check - 1] >= MemoryTrimmer.QuietAllocation) || sinceTrim > MemoryTrimmer.IdleGarbage,
                    $"trimmed at quiet check {check + 1} with {string.Join(", ", outside)} bytes allocated outside the trimmer in the intervals so far");
                trims++;
                sinceTrim = 0;
            }
            end = GC.GetTotalAllocatedBytes();
        }
        return trims;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AllocateGarbage(long bytes)
    {
        for (long allocated = 0; allocated < bytes; allocated += 8192)
        {
            GC.KeepAlive(new byte[8192]);
        }
    }

    [Fact]
    public async Task Dead_objects_left_in_the_oldest_generation_are_collected_and_their_pages_handed_back()
    {
        var time = new FakeTimeProvider();
        var metrics = new SidecarMetrics(new IdentityState(time));
        var trimmer = new MemoryTrimmer(metrics, time, NullLogger<MemoryTrimmer>.Instance);

        PromoteGarbage(64 * MiB);
        var before = GC.GetGCMemoryInfo().TotalCommittedBytes;
        using var code = new FileMapping(1 << 20); // the code the load runs
        code.Read();
        Assert.True(before > 64 * MiB, $"the garbage was not committed: {before / MiB} MiB");
        // A full collection may have run while the garbage was still referenced and counted it as live: then only
        // the age of that count lets the trimmer act, as in a sidecar after a burst.
        if (!trimmer.TrimIfDue())
        {
            time.Advance(MemoryTrimmer.LiveDataTrustedFor + MemoryTrimmer.Interval);
            AllocateGarbage(1 * MiB); // the load goes on
            Assert.True(trimmer.TrimIfDue(), "a stale count of live data kept the garbage");
        }

        var after = GC.GetGCMemoryInfo().TotalCommittedBytes;
        Assert.True(after < before - 48 * MiB, $"committed {before / MiB} MiB before the trim, {after / MiB} MiB after");
        Assert.Equal((1 << 20) / Environment.SystemPageSize, code.PresentPages()); // a trim under load leaves the code mapped: it is running
        // The load stops. The trim took the garbage, but the code the burst ran is still mapped: the first quiet
        // check hands it back, once.
        Assert.True(trimmer.TrimIfDue());
        Assert.Equal(0, code.PresentPages());
        Assert.False(trimmer.TrimIfDue());
        using var exported = new MemoryStream();
        await metrics.Registry.CollectAndExportAsTextAsync(exported);
        Assert.Contains("ztm_memory_trims_total 2", System.Text.Encoding.UTF8.GetString(exported.ToArray()), StringComparison.Ordinal);
    }

    /// <summary>Small arrays (not the large-object heap), kept alive through two collections into the oldest generation, then dropped.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void PromoteGarbage(long bytes)
    {
        var arrays = new List<byte[]>();
        for (long allocated = 0; allocated < bytes; allocated += 8192)
        {
            arrays.Add(new byte[8192]);
        }
        GC.Collect(1, GCCollectionMode.Forced, blocking: true, compacting: false);
        GC.Collect(1, GCCollectionMode.Forced, blocking: true, compacting: false);
        GC.KeepAlive(arrays);
    }
}
