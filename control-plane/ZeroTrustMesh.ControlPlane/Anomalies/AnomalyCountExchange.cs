using System.Globalization;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Kubernetes;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>
/// How the leader's detector sees what the sidecars of every replica served: a sidecar's observations reach one
/// replica, and only the leader judges. None standalone (one replica); in Kubernetes, ConfigMaps
/// (<see cref="ConfigMapAnomalyCounts"/>).
/// </summary>
internal interface IAnomalyCountExchange
{
    /// <summary>A replica that does not lead hands over what it counted since its last call.</summary>
    /// <exception cref="IOException">The counts could not be handed over (they are kept for the next call).</exception>
    Task PublishAsync(IReadOnlyList<ForwardedCount> counts, long dropped, CancellationToken cancellation);

    /// <summary>
    /// On the leader: the counts the other replicas handed over that it has not taken yet (the first call after
    /// becoming leader, only those handed over after <paramref name="after"/>: the state it took over holds the rest).
    /// </summary>
    /// <exception cref="IOException">They could not be read.</exception>
    Task<IReadOnlyList<ForwardedCount>> CollectAsync(DateTimeOffset after, CancellationToken cancellation);
}

/// <summary>
/// Kubernetes: every replica that does not lead writes its counts to a ConfigMap of its own,
/// <c>ztm-anomaly-counts-&lt;replica&gt;</c> (label <c>ztm.dev/report=anomaly-counts</c>, owned by its pod as the
/// sidecar reports are), as numbered batches; the last <see cref="KeptBatches"/> are kept, so a leader that reads less
/// often than they are written misses none. The leader lists them and takes each batch once (by the replica's
/// incarnation and the batch's number). Bounds: <see cref="AnomalyOptions.MaxForwardedKeys"/> callers × routes per
/// batch (the requests of the rest are counted in the batch as dropped), and a batch that would not fit the ConfigMap
/// is left out whole, counted in the next.
/// </summary>
internal sealed class ConfigMapAnomalyCounts : IAnomalyCountExchange
{
    public const string NamePrefix = "ztm-anomaly-counts-";
    public const string ReportLabelValue = "anomaly-counts";
    public const string CountsKey = "counts.json.gz";
    public const int KeptBatches = 6;

    private readonly IKubernetes _client;
    private readonly string _namespace;
    private readonly string _replica;
    private readonly ReplicaConfigMap _own;
    private readonly ILogger<ConfigMapAnomalyCounts> _logger;
    private readonly string _incarnation = Guid.NewGuid().ToString("N");
    private readonly TimeProvider _time;
    private readonly List<CountBatch> _batches = [];
    private readonly Dictionary<string, (string Incarnation, long Sequence)> _taken = new(StringComparer.Ordinal);
    private long _sequence;
    private long _carriedDropped;
    private bool _unwritten;

    public ConfigMapAnomalyCounts(IKubernetes client, string @namespace, IReplicaLeadership leadership, TimeProvider time, ILogger<ConfigMapAnomalyCounts> logger)
    {
        _client = client;
        _namespace = @namespace;
        _replica = leadership.Identity;
        _time = time;
        _logger = logger;
        _own = new ReplicaConfigMap(client, @namespace, _replica);
        Name = ConfigMaps.NameFor(NamePrefix, _replica);
    }

    /// <summary>This replica's ConfigMap.</summary>
    public string Name { get; }

    public async Task PublishAsync(IReadOnlyList<ForwardedCount> counts, long dropped, CancellationToken cancellation)
    {
        if (counts.Count == 0 && dropped == 0 && _carriedDropped == 0 && !_unwritten)
        {
            return;
        }
        if (counts.Count > 0 || dropped > 0 || _carriedDropped > 0)
        {
            AddBatch(counts, dropped);
        }
        var zipped = ConfigMaps.Zip(new CountReport(_replica, _incarnation, _batches), AnomalyCountsJson.Default.CountReport);
        var map = new V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            Metadata = new V1ObjectMeta
            {
                Name = Name,
                NamespaceProperty = _namespace,
                Labels = new Dictionary<string, string>
                {
                    [SecretCaStore.ManagedByLabel] = SecretCaStore.ManagedBy,
                    [ConfigMapBundleFollowers.ReportLabel] = ReportLabelValue,
                },
            },
            Data = new Dictionary<string, string> { ["replica"] = _replica, ["lastBatch"] = _sequence.ToString(CultureInfo.InvariantCulture) },
            BinaryData = new Dictionary<string, byte[]> { [CountsKey] = zipped },
        };
        try
        {
            await _own.WriteAsync(map, reason => CoordinationLog.ReplicaReportNotOwned(_logger, _namespace, Name, _replica, reason), cancellation);
            _unwritten = false;
        }
        catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
        {
            // The batch stays among the kept ones: the next round writes it.
            _unwritten = true;
            throw new IOException($"cannot write ConfigMap {_namespace}/{Name}: {ConfigMaps.Describe(e)}", e);
        }
    }

    /// <summary>Keeps a new batch among the last <see cref="KeptBatches"/>; one that would not fit the ConfigMap is counted in the next instead.</summary>
    private void AddBatch(IReadOnlyList<ForwardedCount> counts, long dropped)
    {
        var batch = new CountBatch(++_sequence, _time.GetUtcNow(), dropped + _carriedDropped, [.. counts.Select(c => new CountEntry(c.Key, c.Count, c.Errors, c.Seen))]);
        _batches.Add(batch);
        if (_batches.Count > KeptBatches)
        {
            _batches.RemoveAt(0);
        }
        var zipped = ConfigMaps.Zip(new CountReport(_replica, _incarnation, _batches), AnomalyCountsJson.Default.CountReport);
        if (zipped.Length > ConfigMaps.MaxPayloadBytes)
        {
            _batches.Remove(batch);
            _carriedDropped = batch.Dropped + batch.Entries.Sum(e => e.Count);
        }
        else
        {
            _carriedDropped = 0;
        }
    }

    public async Task<IReadOnlyList<ForwardedCount>> CollectAsync(DateTimeOffset after, CancellationToken cancellation)
    {
        V1ConfigMapList list;
        try
        {
            list = await _client.CoreV1.ListNamespacedConfigMapAsync(_namespace,
                labelSelector: $"{ConfigMapBundleFollowers.ReportLabel}={ReportLabelValue}", cancellationToken: cancellation);
        }
        catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
        {
            throw new IOException($"cannot list the replicas' anomaly counts in {_namespace}: {ConfigMaps.Describe(e)}", e);
        }
        var collected = new List<ForwardedCount>();
        foreach (var map in list.Items.Where(m => m.Metadata?.Name is { } n && n != Name))
        {
            CountReport report;
            try
            {
                report = map.BinaryData?.TryGetValue(CountsKey, out var zipped) == true && zipped is not null
                    ? ConfigMaps.Unzip(zipped, AnomalyCountsJson.Default.CountReport)
                    : throw new InvalidDataException($"it has no {CountsKey}");
            }
            catch (InvalidDataException e)
            {
                AnomalyLog.CountsUnreadable(_logger, _namespace, map.Metadata.Name, e.Message);
                continue;
            }
            var known = _taken.TryGetValue(map.Metadata.Name, out var taken) && taken.Incarnation == report.Incarnation;
            var fresh = report.Batches.Where(b => known ? b.Sequence > taken.Sequence : b.At > after).ToList();
            if (report.Batches.Count > 0)
            {
                _taken[map.Metadata.Name] = (report.Incarnation, report.Batches.Max(b => b.Sequence));
            }
            if (known && fresh.Count > 0 && fresh[0].Sequence > taken.Sequence + 1)
            {
                AnomalyLog.CountsMissed(_logger, report.Replica, fresh[0].Sequence - taken.Sequence - 1);
            }
            foreach (var batch in fresh)
            {
                if (batch.Dropped > 0)
                {
                    AnomalyLog.CountsDropped(_logger, report.Replica, batch.Dropped);
                }
                collected.AddRange(batch.Entries.Select(e => new ForwardedCount(e.Key, e.Count, e.Errors, e.Seen)));
            }
        }
        return collected;
    }

    /// <param name="Seen">Absent in a batch of a replica that predates it: zero, the caller's history starts when the leader takes it.</param>
    internal sealed record CountEntry(AnomalyKey Key, long Count, long Errors, TimeSpan Seen = default);

    internal sealed record CountBatch(long Sequence, DateTimeOffset At, long Dropped, List<CountEntry> Entries);

    /// <param name="Incarnation">Changes with every start of the replica: its batch numbers start again.</param>
    internal sealed record CountReport(string Replica, string Incarnation, List<CountBatch> Batches);
}

[JsonSerializable(typeof(ConfigMapAnomalyCounts.CountReport))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class AnomalyCountsJson : JsonSerializerContext;
