using BenchmarkDotNet.Attributes;
using ZeroTrustMesh.DecisionLog;

namespace ZeroTrustMesh.Benchmarks.DecisionLog;

/// <summary>
/// The decision log's ceiling: the sidecar's one writer appending records to the hash chain (canonical JSON, SHA-256
/// over the previous hash and the record, the line into a 64 KiB buffer, written to the segment file, flushed every
/// 256 records as when its queue runs empty). Target: 50,000 records/s, i.e. at most 20 µs per record.
/// </summary>
[MemoryDiagnoser]
public class DecisionLogBenchmarks
{
    private const int Batch = 4096;

    private string _directory = null!;
    private ChainWriter _writer = null!;
    private Decision[] _decisions = null!;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("ztm-decisionlog-bench-").FullName;
        _writer = ChainWriter.Open(_directory, "spiffe://cluster.local/ns/shop/sa/orders", 64L << 20);
        var now = DateTimeOffset.UtcNow;
        _decisions = [.. Enumerable.Range(0, 1024).Select(i => new Decision(now.AddMilliseconds(i), $"spiffe://cluster.local/ns/shop/sa/caller{i % 5}",
            i % 3 == 0 ? "POST" : "GET", $"/orders/{i}", 8080, i % 7 == 0 ? 403 : 200, i % 7 != 0, i % 7 == 0 ? null : "shop/orders-readers",
            i % 7 == 0 ? -1 : 0, i % 7 == 0 ? "RBAC: access denied: no ALLOW policy matched" : null))];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _writer.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>One record (the figure is per record: <see cref="Batch"/> per invocation).</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void Append()
    {
        for (var i = 0; i < Batch; i++)
        {
            _writer.Append(_decisions[i & 1023]);
            if ((i & 255) == 255)
            {
                _writer.Flush();
            }
        }
    }
}
