namespace ZeroTrustMesh.Sidecar.Tests.Http1;

/// <summary>
/// Bytes allocated in this process per request are a process-wide count: the test runs alone (a parallel test class's
/// allocations once made the fast path look three times as costly) and takes each path's least of three interleaved rounds.
/// </summary>
[Collection(GarbageCollectorCollection.Name)]
public sealed class Http1AppHopAllocationTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task The_fast_path_allocates_less_per_request_than_the_YARP_path()
    {
        // The caller, the sidecar and the app are the same code on both sides but for the hop, so the difference is the hop's.
        var least = new Dictionary<bool, double> { [false] = double.MaxValue, [true] = double.MaxValue };
        for (var round = 0; round < 3; round++)
        {
            foreach (var fastPath in new[] { false, true })
            {
                least[fastPath] = Math.Min(least[fastPath], await BytesPerRequestAsync(fastPath));
            }
        }
        output.WriteLine($"bytes allocated per GET (caller + sidecar + app), least of 3 rounds: YARP path {least[false]:0}, fast path {least[true]:0}");
        Assert.True(least[true] < least[false], $"fast path {least[true]:0} B, YARP path {least[false]:0} B per request");
    }

    private static async Task<double> BytesPerRequestAsync(bool fastPath)
    {
        await using var host = await Http1AppHopTests.StartAsync(fastPath);
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
        for (var i = 0; i < 200; i++)
        {
            await http.GetStringAsync(new Uri("/secret", UriKind.Relative)); // warm-up: JIT, pools, connections
        }
        const int requests = 1000;
        var before = GC.GetTotalAllocatedBytes(precise: true);
        for (var i = 0; i < requests; i++)
        {
            await http.GetStringAsync(new Uri("/secret", UriKind.Relative));
        }
        return (GC.GetTotalAllocatedBytes(precise: true) - before) / (double)requests;
    }
}
