using System.Globalization;
using System.Text.Json.Serialization;
using k8s;
using k8s.Autorest;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Kubernetes;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// Which trust bundle the sidecars of every replica follow, with several replicas (<c>--kubernetes</c>):
/// 1. every replica writes its own report (<see cref="ReplicaReport"/>: the bundle it serves, and each of its sidecars'
///    bundle sequence, last answer and certificate) into a ConfigMap of its own, <c>ztm-sidecars-&lt;replica&gt;</c>
///    (label <c>ztm.dev/report=sidecars</c>), at start and then every <c>--ca-rotation-poll</c>; the ConfigMap is
///    owned by the replica's Pod, so the cluster deletes it with the pod (no replica needs the right to delete);
/// 2. <see cref="Read"/> lists those ConfigMaps; this replica's own sidecars come from memory, not from its last write;
/// 3. a report whose resourceVersion has not changed for <c>--replica-report-timeout</c>, as this replica observes it
///    (no other host's clock is trusted, as client-go's leader election), is a replica that stopped: it is ignored, and
///    its sidecars count where they reconnect;
/// 4. the union counts a sidecar once (<see cref="BundleFollowers.Merge"/>). A replica that serves an older bundle than
///    a step waits for has not followed that step yet, and holds it (<see cref="CaRotation"/>).
/// The sidecar list is gzipped JSON (binaryData <c>sidecars.json.gz</c>: a ConfigMap holds 1 MiB, tens of thousands of
/// sidecars this way); a summary for <c>kubectl</c> sits beside it in data.
/// </summary>
internal sealed class ConfigMapBundleFollowers : BackgroundService, IBundleFollowers
{
    public const string NamePrefix = "ztm-sidecars-";
    public const string ReportLabel = "ztm.dev/report";
    public const string ReportLabelValue = "sidecars";
    public const string SidecarsKey = "sidecars.json.gz";

    private readonly IKubernetes _client;
    private readonly string _namespace;
    private readonly string _replica;
    private readonly ConfigDistributor _sessions;
    private readonly ConfigStore _config;
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<ConfigMapBundleFollowers> _logger;
    private readonly Lock _gate = new();

    /// <summary>Per other replica's ConfigMap: the resourceVersion last seen, and since when (this replica's clock).</summary>
    private readonly Dictionary<string, (string ResourceVersion, DateTimeOffset Since)> _observed = new(StringComparer.Ordinal);

    private readonly HashSet<string> _staleLogged = new(StringComparer.Ordinal);
    private readonly ReplicaConfigMap _own;
    private string _lastFailure = "";

    public ConfigMapBundleFollowers(IKubernetes client, string @namespace, ConfigDistributor sessions, ConfigStore config, ControlPlaneOptions options,
        IReplicaLeadership leadership, TimeProvider time, ILogger<ConfigMapBundleFollowers> logger)
    {
        _client = client;
        _namespace = @namespace;
        _replica = leadership.Identity;
        _sessions = sessions;
        _config = config;
        _options = options;
        _time = time;
        _logger = logger;
        Name = NameOf(_replica);
        _own = new ReplicaConfigMap(client, @namespace, _replica);
    }

    /// <summary>This replica's ConfigMap.</summary>
    public string Name { get; }

    public string Location => $"ConfigMaps {_namespace}/{NamePrefix}* (label {ReportLabel}={ReportLabelValue})";

    /// <summary>
    /// The ConfigMap of <paramref name="replica"/>: <c>ztm-sidecars-</c> and its name (a pod's name is a DNS subdomain),
    /// or a digest of it when that is no object name.
    /// </summary>
    public static string NameOf(string replica) => ConfigMaps.NameFor(NamePrefix, replica);

    public BundleFollowers Read()
    {
        var now = _time.GetUtcNow();
        var own = LocalBundleFollowers.Report(_sessions, _config, _replica, now);
        V1ConfigMapList list;
        try
        {
            list = _client.CoreV1.ListNamespacedConfigMap(_namespace, labelSelector: $"{ReportLabel}={ReportLabelValue}");
        }
        catch (Exception e) when (e is HttpOperationException or HttpRequestException or IOException or OperationCanceledException)
        {
            return new BundleFollowers(_replica, [own], [], $"the other replicas' reports ({Location}) cannot be read: {ConfigMaps.Describe(e)}");
        }
        var live = new List<ReplicaReport> { own };
        var stale = new List<StaleReport>();
        lock (_gate)
        {
            var listed = new HashSet<string>(StringComparer.Ordinal);
            foreach (var map in list.Items)
            {
                var name = map.Metadata?.Name ?? "";
                if (name == Name || name.Length == 0)
                {
                    continue; // this replica's own: from memory, above
                }
                listed.Add(name);
                var version = map.Metadata!.ResourceVersion ?? "";
                if (!_observed.TryGetValue(name, out var seen) || seen.ResourceVersion != version)
                {
                    seen = (version, now);
                    _observed[name] = seen;
                    _staleLogged.Remove(name);
                }
                var replica = map.Data?.TryGetValue("replica", out var r) == true ? r : name[NamePrefix.Length..];
                if (now - seen.Since >= _options.ReplicaReportTimeout)
                {
                    stale.Add(new StaleReport(replica, $"ConfigMap {_namespace}/{name}", seen.Since));
                    if (_staleLogged.Add(name))
                    {
                        CoordinationLog.ReplicaReportStale(_logger, replica, _namespace, name, (now - seen.Since).TotalSeconds);
                    }
                    continue;
                }
                live.Add(Parse(map, replica, name));
            }
            foreach (var gone in _observed.Keys.Where(k => !listed.Contains(k)).ToList())
            {
                _observed.Remove(gone); // deleted with its pod
                _staleLogged.Remove(gone);
            }
        }
        return new BundleFollowers(_replica, [own, .. live.Skip(1).OrderBy(r => r.Replica, StringComparer.Ordinal)], stale);
    }

    private ReplicaReport Parse(V1ConfigMap map, string replica, string name)
    {
        try
        {
            if (map.BinaryData?.TryGetValue(SidecarsKey, out var zipped) != true || zipped is null)
            {
                throw new InvalidDataException($"it has no {SidecarsKey}");
            }
            var report = ConfigMaps.Unzip(zipped, BundleFollowersJson.Default.ReplicaReport);
            return report with { Replica = replica, Sidecars = [.. report.Sidecars.Select(s => s with { Replica = replica })] };
        }
        catch (InvalidDataException e)
        {
            return new ReplicaReport(replica, 0, DateTimeOffset.MinValue, [], $"its report in ConfigMap {_namespace}/{name} does not parse: {e.Message}");
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await PublishAsync(stoppingToken);
                await Task.Delay(_options.CaRotationPoll, _time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping: the report stays, and goes stale (its sidecars are counted where they reconnect)
        }
    }

    /// <summary>Writes this replica's report; a failure is logged (once per reason) and the next poll writes again.</summary>
    public async Task PublishAsync(CancellationToken cancellation)
    {
        var report = LocalBundleFollowers.Report(_sessions, _config, _replica, _time.GetUtcNow());
        try
        {
            var map = new V1ConfigMap
            {
                ApiVersion = "v1",
                Kind = "ConfigMap",
                Metadata = new V1ObjectMeta
                {
                    Name = Name,
                    NamespaceProperty = _namespace,
                    Labels = new Dictionary<string, string> { [SecretCaStore.ManagedByLabel] = SecretCaStore.ManagedBy, [ReportLabel] = ReportLabelValue },
                },
                Data = new Dictionary<string, string>
                {
                    ["replica"] = _replica,
                    ["bundleSequence"] = report.BundleSequence.ToString(CultureInfo.InvariantCulture),
                    ["sidecars"] = report.Sidecars.Count.ToString(CultureInfo.InvariantCulture),
                    ["refreshedAt"] = report.RefreshedAt.ToString("O", CultureInfo.InvariantCulture),
                },
                BinaryData = new Dictionary<string, byte[]> { [SidecarsKey] = ConfigMaps.Zip(report, BundleFollowersJson.Default.ReplicaReport) },
            };
            await _own.WriteAsync(map, reason => CoordinationLog.ReplicaReportNotOwned(_logger, _namespace, Name, _replica, reason), cancellation);
            _lastFailure = "";
        }
        catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
        {
            var reason = ConfigMaps.Describe(e);
            if (reason != _lastFailure)
            {
                _lastFailure = reason;
                CoordinationLog.ReplicaReportNotWritten(_logger, _namespace, Name, _options.CaRotationPoll.TotalSeconds, reason);
            }
        }
    }
}

[JsonSerializable(typeof(ReplicaReport))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class BundleFollowersJson : JsonSerializerContext;
