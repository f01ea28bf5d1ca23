namespace ZeroTrustMesh.DecisionLog.Tests;

/// <summary>A log written by the real <see cref="ChainWriter"/> into a temporary directory, with signed checkpoints.</summary>
internal sealed class LogFixture : IDisposable
{
    public static readonly DateTimeOffset Start = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);

    public LogFixture(int records, long segmentBytes = 4096, int checkpointEvery = 40, bool finalCheckpoint = true)
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("ztm-decisionlog-").FullName;
        using var writer = ChainWriter.Open(Directory, TestSvid.Workload, segmentBytes);
        for (var i = 0; i < records; i++)
        {
            var time = Start.AddMilliseconds(i * 10);
            if (i % 97 == 50)
            {
                writer.AppendGap(time, 3);
            }
            else
            {
                writer.Append(Sample(i, time));
            }
            if ((i + 1) % checkpointEvery == 0 || (finalCheckpoint && i == records - 1))
            {
                writer.Flush();
                Checkpoints.Add(Svid.Sign(writer, time));
            }
        }
        Chain = writer.Chain;
        Last = writer.Sequence;
    }

    public string Directory { get; }

    public TestSvid Svid { get; } = new();

    public List<Checkpoint> Checkpoints { get; } = [];

    public string Chain { get; }

    public long Last { get; }

    public IReadOnlyList<string> Segments => ChainWriter.Segments(Directory);

    /// <param name="chainToBundle">Whether checkpoints' SVIDs are chained to the CA as well (X509Chain: slow, once per checkpoint).</param>
    public LogVerification Verify(string? directory = null, IReadOnlyList<Checkpoint>? checkpoints = null, bool chainToBundle = true) =>
        LogVerifier.Verify(ChainWriter.Segments(directory ?? Directory), wholeLog: true, checkpoints ?? Checkpoints, null, chainToBundle ? Svid.Bundle : null);

    public static Decision Sample(int i, DateTimeOffset time) => new(time,
        $"spiffe://cluster.local/ns/shop/sa/caller{i % 5}", i % 3 == 0 ? "POST" : "GET", $"/orders/{i}", 8080,
        i % 7 == 0 ? 403 : 200, i % 7 != 0, i % 7 == 0 ? null : "shop/orders-readers", i % 7 == 0 ? -1 : i % 2,
        i % 7 == 0 ? "RBAC: access denied: no ALLOW policy matched" : null);

    public void Dispose()
    {
        Svid.Dispose();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}
