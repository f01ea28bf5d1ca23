using System.Diagnostics;
using Xunit.Abstractions;

namespace ZeroTrustMesh.DecisionLog.Tests;

/// <summary>
/// The writer's throughput: the sidecar's one decision-log writer runs exactly this loop (append, flush when its queue is
/// empty), so its rate is the log's ceiling. Measured per second of CPU time this process used (the wall clock of a
/// machine shared with other builds says more about them than about the writer): at least 50,000 records per CPU second.
/// Both figures go to the test output. The process's CPU time counts every thread, so nothing else runs beside it.
/// </summary>
[CollectionDefinition(nameof(ThroughputTests), DisableParallelization = true)]
public sealed class ThroughputCollection;

[Collection(nameof(ThroughputTests))]
public sealed class ThroughputTests(ITestOutputHelper output)
{
    [Fact]
    public void The_writer_appends_over_fifty_thousand_records_per_cpu_second()
    {
        const int Records = 300_000;
        var dir = Directory.CreateTempSubdirectory("ztm-throughput-").FullName;
        try
        {
            var decisions = Enumerable.Range(0, 1024).Select(i => LogFixture.Sample(i, LogFixture.Start.AddMilliseconds(i))).ToArray();
            using (var warmup = ChainWriter.Open(Path.Combine(dir, "warmup"), TestSvid.Workload, 64L << 20))
            {
                for (var i = 0; i < 20_000; i++)
                {
                    warmup.Append(decisions[i & 1023]);
                }
            }
            var allocated = GC.GetAllocatedBytesForCurrentThread();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            long written;
            using (var writer = ChainWriter.Open(Path.Combine(dir, "log"), TestSvid.Workload, 64L << 20))
            {
                for (var i = 0; i < Records; i++)
                {
                    writer.Append(decisions[i & 1023]);
                    if ((i & 255) == 255)
                    {
                        writer.Flush(); // as the sidecar does whenever its queue runs empty
                    }
                }
                written = writer.Sequence; // the decisions and each segment's open record
            }
            clock.Stop();
            var cpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds;
            var perSecond = Records / clock.Elapsed.TotalSeconds;
            var perCpuSecond = Records / cpuSeconds;
            var bytesPerRecord = (GC.GetAllocatedBytesForCurrentThread() - allocated) / (double)Records;
            var line = $"{Records} records in {clock.Elapsed.TotalMilliseconds:0} ms wall, {cpuSeconds * 1000:0} ms CPU: {perSecond:0} records/s wall, "
                + $"{perCpuSecond:0} records per CPU second, {bytesPerRecord:0.0} bytes allocated per record";
            output.WriteLine(line);
            Assert.True(perCpuSecond >= 50_000, line);
            var result = LogVerifier.Verify(ChainWriter.Segments(Path.Combine(dir, "log")), wholeLog: true, []);
            Assert.Equal(written, result.Records); // every record there and chained (no checkpoint: only that one problem)
            Assert.Single(result.Problems);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
