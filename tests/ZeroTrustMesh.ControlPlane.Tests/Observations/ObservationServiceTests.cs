using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.RegularExpressions;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.Observations;

/// <summary>
/// The observation stream's checks, on the service itself with a real CA's SVIDs and a fake clock: a batch for another
/// identity, oversized or malformed batches, clock skew, sequence gaps; what passes reaches every consumer, what does
/// not reaches none.
/// </summary>
public sealed partial class ObservationServiceTests() : ControlPlanePartsTest("observations")
{
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");
    private static readonly SpiffeId Frontend = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/frontend");

    private ControlPlaneParts _parts = null!;
    private ObservationMetrics _metrics = null!;
    private readonly Collecting _first = new();
    private readonly Collecting _second = new();

    private async Task<ObservationService> ServiceAsync()
    {
        _parts = await StartPartsAsync();
        _metrics = new ObservationMetrics(_parts.Get<ControlPlaneMetrics>());
        return new ObservationService(_parts.Get<WorkloadCaller>(), [_first, _second], _metrics, Time, NullLogger<ObservationService>.Instance);
    }

    [Fact]
    public async Task Batches_reach_every_consumer_with_the_reporter_and_its_service_and_each_is_acked()
    {
        var service = await ServiceAsync();
        using var svid = Issue(Orders);
        var acks = new Acks();

        await service.Report(new Batches(Batch(Orders, 1, 3), Batch(Orders, 2, 2)), acks, new TestCallContext("/ztm.v1.Observations/Report", svid));

        foreach (var consumer in new[] { _first, _second })
        {
            Assert.Equal(5, consumer.Received.Count);
            Assert.All(consumer.Received, r => Assert.Equal(new ObservationReporter(Orders, "orders.shop"), r.Reporter));
        }
        Assert.Equal([(1UL, 3U), (2UL, 2U)], acks.Written.Select(a => (a.Sequence, a.Accepted)));
        var text = await ScrapeAsync();
        Assert.Equal(5, Sample(text, "ztm_observations_accepted_total"));
        Assert.Equal(0, Sample(text, "ztm_observation_sequence_gaps_total"));
    }

    [Fact]
    public async Task A_batch_for_another_identity_is_refused_naming_both_and_nothing_of_it_is_consumed()
    {
        var service = await ServiceAsync();
        using var svid = Issue(Frontend);

        var e = await Assert.ThrowsAsync<RpcException>(() =>
            service.Report(new Batches(Batch(Orders, 1, 2)), new Acks(), new TestCallContext("/ztm.v1.Observations/Report", svid)));

        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Contains("'spiffe://cluster.local/ns/shop/sa/orders'", e.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("'spiffe://cluster.local/ns/shop/sa/frontend'", e.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(_first.Received);
        Assert.Equal(1, Sample(await ScrapeAsync(), "ztm_observation_batches_refused_total", ("reason", "another_identity")));
    }

    [Fact]
    public async Task A_stream_without_an_SVID_is_unauthenticated()
    {
        var service = await ServiceAsync();

        var e = await Assert.ThrowsAsync<RpcException>(() =>
            service.Report(new Batches(Batch(Orders, 1, 1)), new Acks(), new TestCallContext("/ztm.v1.Observations/Report")));

        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.Empty(_first.Received);
    }

    public static TheoryData<string, string, string> Malformed => new()
    {
        { "too_many", "observations: 2001 in one batch, over the limit of 2000", "count" },
        { "too_large", "bytes, over the limit of 4194304", "bytes" },
        { "malformed", "observations[1].path: 9000 characters, over the limit of 8192", "path" },
        { "malformed", "observations[1].method: 33 characters, over the limit of 32", "method" },
        { "malformed", "observations[1].caller: 2049 characters, over the limit of 2048", "caller" },
        { "malformed", "observations[1].at: required", "at" },
        { "malformed", "observations[1].at: required, a valid timestamp", "at-range" },
        { "malformed", "observations[1].path: must start with '/'", "relative" },
        { "malformed", "observations[1].status: 42 is not an HTTP status", "status" },
        { "malformed", "sent_at: required", "sent_at" },
        { "sequence", "sequence: 0 after 0; it must increase", "sequence" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public async Task A_malformed_or_oversized_batch_is_refused_with_the_field_and_nothing_of_it_is_consumed(string reason, string message, string what)
    {
        var service = await ServiceAsync();
        using var svid = Issue(Orders);
        var batch = Batch(Orders, 1, 2);
        switch (what)
        {
            case "count":
                batch = Batch(Orders, 1, ObservationLimits.MaxObservations + 1);
                break;
            case "bytes":
                for (var i = 0; i < 600; i++)
                {
                    batch.Observations.Add(new Observation(batch.Observations[0]) { Path = "/" + new string('a', 8000) });
                }
                break;
            case "path":
                batch.Observations[1].Path = "/" + new string('a', 8999);
                break;
            case "method":
                batch.Observations[1].Method = new string('G', 33);
                break;
            case "caller":
                batch.Observations[1].Caller = new string('c', 2049);
                break;
            case "at":
                batch.Observations[1].At = null;
                break;
            case "at-range":
                batch.Observations[1].At = new Timestamp { Seconds = long.MaxValue };
                break;
            case "relative":
                batch.Observations[1].Path = "orders";
                break;
            case "status":
                batch.Observations[1].Status = 42;
                break;
            case "sent_at":
                batch.SentAt = null;
                break;
            case "sequence":
                batch.Sequence = 0;
                break;
        }

        var e = await Assert.ThrowsAsync<RpcException>(() =>
            service.Report(new Batches(batch), new Acks(), new TestCallContext("/ztm.v1.Observations/Report", svid)));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains(message, e.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(_first.Received);
        Assert.Equal(1, Sample(await ScrapeAsync(), "ztm_observation_batches_refused_total", ("reason", reason)));
    }

    [Fact]
    public async Task Times_are_corrected_by_the_reporters_skew_and_clamped_into_the_last_hour()
    {
        var service = await ServiceAsync();
        using var svid = Issue(Orders);
        var now = Time.GetUtcNow();
        // The sidecar's clock is 10 minutes behind: it sent at now-10m what it saw at now-10m-2s.
        var batch = Batch(Orders, 1, 3, sentAt: now.AddMinutes(-10));
        batch.Observations[0].At = Timestamp.FromDateTimeOffset(now.AddMinutes(-10).AddSeconds(-2));
        batch.Observations[1].At = Timestamp.FromDateTimeOffset(now.AddMinutes(-10).AddHours(3)); // in the future even after correction
        batch.Observations[2].At = Timestamp.FromDateTimeOffset(now.AddDays(-2)); // too old

        await service.Report(new Batches(batch), new Acks(), new TestCallContext("/ztm.v1.Observations/Report", svid));

        var at = _first.Received.Select(r => r.Observation.At.ToDateTimeOffset()).ToList();
        Assert.Equal(now.AddSeconds(-2), at[0]);
        Assert.Equal(now, at[1]);
        Assert.Equal(now - ObservationLimits.MaxAge, at[2]);
        Assert.Equal(2, Sample(await ScrapeAsync(), "ztm_observation_times_clamped_total"));
    }

    [Fact]
    public async Task Sequence_gaps_and_what_the_sidecar_dropped_are_counted()
    {
        var service = await ServiceAsync();
        using var svid = Issue(Orders);
        var third = Batch(Orders, 3, 1);
        third.Dropped = 40;
        var seventh = Batch(Orders, 7, 1);
        seventh.Dropped = 2;

        await service.Report(new Batches(Batch(Orders, 1, 1), third, seventh), new Acks(), new TestCallContext("/ztm.v1.Observations/Report", svid));

        var text = await ScrapeAsync();
        Assert.Equal(1 + 3, Sample(text, "ztm_observation_sequence_gaps_total")); // 2 missing, then 4, 5, 6
        Assert.Equal(42, Sample(text, "ztm_observations_dropped_by_sidecars_total"));
        Assert.Equal(3, _first.Received.Count);
    }

    [Fact]
    public async Task A_consumer_that_throws_does_not_keep_the_others_or_the_stream_from_going_on()
    {
        _parts = await StartPartsAsync();
        _metrics = new ObservationMetrics(_parts.Get<ControlPlaneMetrics>());
        var service = new ObservationService(_parts.Get<WorkloadCaller>(), [new Throwing(), _second], _metrics, Time, NullLogger<ObservationService>.Instance);
        using var svid = Issue(Orders);
        var acks = new Acks();

        await service.Report(new Batches(Batch(Orders, 1, 2), Batch(Orders, 2, 2)), acks, new TestCallContext("/ztm.v1.Observations/Report", svid));

        Assert.Equal(4, _second.Received.Count);
        Assert.Equal(2, acks.Written.Count);
    }

    private ObservationBatch Batch(SpiffeId reporter, ulong sequence, int count, DateTimeOffset? sentAt = null)
    {
        var now = sentAt ?? Time.GetUtcNow();
        var batch = new ObservationBatch { Sequence = sequence, Reporter = reporter.Value, SentAt = Timestamp.FromDateTimeOffset(now) };
        for (var i = 0; i < count; i++)
        {
            batch.Observations.Add(new Observation
            {
                At = Timestamp.FromDateTimeOffset(now.AddMilliseconds(-i)),
                Caller = Frontend.Value,
                Method = "GET",
                Path = $"/orders/{i.ToString(CultureInfo.InvariantCulture)}",
                Port = 8080,
                Status = 200,
                Decision = Decision.Allowed,
            });
        }
        return batch;
    }

    private X509Certificate2 Issue(SpiffeId id)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = _parts.Get<CertificateAuthority>().IssueSvid(id, new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));
        return leaf.CopyWithPrivateKey(key);
    }

    private async Task<string> ScrapeAsync()
    {
        using var stream = new MemoryStream();
        await _parts.Get<ControlPlaneMetrics>().Registry.CollectAndExportAsTextAsync(stream);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static double Sample(string text, string name, params (string Label, string Value)[] labels)
    {
        var matching = SampleLine().Matches(text)
            .Where(m => m.Groups["name"].Value == name && labels.All(l => m.Groups["labels"].Value.Contains($"{l.Label}=\"{l.Value}\"", StringComparison.Ordinal)))
            .Select(m => double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture))
            .ToList();
        Assert.True(matching.Count > 0, $"no sample {name} with {string.Join(", ", labels)}");
        return matching.Sum();
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>[^}]*)\})? (?<value>\S+)$", RegexOptions.Multiline)]
    private static partial Regex SampleLine();

    private sealed class Collecting : IObservationConsumer
    {
        public List<(ObservationReporter Reporter, Observation Observation)> Received { get; } = [];

        public void Consume(ObservationReporter reporter, IReadOnlyList<Observation> observations) =>
            Received.AddRange(observations.Select(o => (reporter, o)));
    }

    private sealed class Throwing : IObservationConsumer
    {
        public void Consume(ObservationReporter reporter, IReadOnlyList<Observation> observations) => throw new InvalidOperationException("broken consumer");
    }

    /// <summary>A sidecar's side of the stream: these batches, then the end of the stream.</summary>
    private sealed class Batches(params ObservationBatch[] batches) : IAsyncStreamReader<ObservationBatch>
    {
        private int _next = -1;

        public ObservationBatch Current => batches[_next];

        public Task<bool> MoveNext(CancellationToken cancellationToken) => Task.FromResult(++_next < batches.Length);
    }

    private sealed class Acks : IServerStreamWriter<ObservationAck>
    {
        public List<ObservationAck> Written { get; } = [];

        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(ObservationAck message)
        {
            Written.Add(message);
            return Task.CompletedTask;
        }
    }
}
