using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Sidecar.DecisionLog;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tests.Tls;

namespace ZeroTrustMesh.Sidecar.Tests.DecisionLog;

/// <summary>The decision-log writer's queue: a decision that does not fit is counted and the chain says where it is missing.</summary>
public sealed class DecisionLogWriterTests : IDisposable
{
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private readonly TestCa _ca = new("decision log CA");
    private readonly string _directory = Directory.CreateTempSubdirectory("ztm-decision-log-").FullName;

    [Fact]
    public async Task A_decision_the_full_queue_cannot_take_is_counted_and_written_as_a_gap_before_the_next()
    {
        var state = new IdentityState(TimeProvider.System, new TrustBundle("cluster.local", [_ca.Certificate], 1));
        state.Set(new WorkloadIdentity(SpiffeId.Parse(Orders), _ca.Svid(Orders), []));
        var options = new SidecarOptions
        {
            ControlPlane = new Uri("https://127.0.0.1:1"),
            BootstrapBundle = new TrustBundle("cluster.local", [_ca.Certificate], 1),
            Proof = new IdentityProof.JoinToken("unused"),
            AdminPort = 0,
            InboundEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            OutboundPort = 0,
            AppPorts = [],
            TcpPorts = [],
            // No checkpoint within the test: nothing is sent to the (absent) control plane.
            DecisionLog = new DecisionLogSettings(_directory, DecisionLogSettings.DefaultSegmentBytes, 1_000_000, TimeSpan.FromHours(1)),
        };
        var metrics = new SidecarMetrics(state);
        await using var sender = new CheckpointSender(options, state, TimeProvider.System, NullLogger<CheckpointSender>.Instance);
        var writer = new DecisionLogWriter(options, state, sender, TimeProvider.System, metrics, NullLogger<DecisionLogWriter>.Instance);

        // Not started: the queue fills (16,384 decisions) and the three after it do not fit.
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = "/orders/1";
        for (var i = 0; i < 16_384 + 3; i++)
        {
            writer.Record(context, request: null, 403, refused: true, "test");
        }
        await writer.StartAsync(CancellationToken.None);
        await writer.DisposeAsync(); // completes the queue, writes what is in it, closes the segment

        var kinds = File.ReadLines(Assert.Single(Directory.GetFiles(_directory, "decisions-*.jsonl")))
            .Select(line => JsonDocument.Parse(line).RootElement)
            .Select(r => r.GetProperty("kind").GetString() == "gap" ? $"gap {r.GetProperty("lost").GetInt64()}" : r.GetProperty("kind").GetString())
            .ToList();
        Assert.Equal(["open", "gap 3", "decision"], kinds.Take(3));
        Assert.Equal(1 + 1 + 16_384, kinds.Count);
        Assert.Single(kinds, k => k!.StartsWith("gap", StringComparison.Ordinal));
        using var text = new MemoryStream();
        await metrics.Registry.CollectAndExportAsTextAsync(text);
        Assert.Contains("ztm_decision_log_lost_total 3", System.Text.Encoding.UTF8.GetString(text.ToArray()), StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _ca.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
