using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Kubernetes;
using ZeroTrustMesh.Hosting;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>
/// The policy source in Kubernetes (<c>--kubernetes</c>, registered instead of <see cref="DirectoryPolicySource"/>):
/// the custom resources of every builtin kind (<c>security.ztm.dev/v1</c>), in every namespace. The cluster is the
/// store, so policy is written with kubectl (or GitOps) and <see cref="Apply"/>/<see cref="Delete"/> refuse.
/// 1. Each kind is followed by a <see cref="KubernetesInformer"/> (list, watch from its resourceVersion with bookmarks,
///    resume, backoff, relist on 410 Gone): a list replaces what the source held of that kind, so nothing is lost or
///    counted twice.
/// 2. Each resource is read as the standalone mode reads a file: only what the policy reader knows is kept
///    (<c>apiVersion</c>, <c>kind</c>, <c>spec</c>, and of <c>metadata</c> name, namespace, labels and annotations but
///    kubectl's last-applied copy); <c>status</c> and the server's metadata are the cluster's. It is read with its
///    kind's reader and checked with <see cref="PolicyValidator"/>.
/// 3. Unlike the directory, a change is not all or nothing: each custom resource is its own object, written on its own
///    (kubectl cannot apply a set atomically), so one invalid resource must not hold back the others or take away what
///    is in force. An invalid resource is left out — it never reaches a sidecar — and its status says why; the valid
///    rest is published. A conflict between resources (two ApiSpecs for one service) leaves out the new or changed
///    ones it names, so what is in force stays. Only a limit across the whole set (the number of authorization rules)
///    keeps the last good set, as standalone; the resources not in force then say so. Nothing is published until every
///    kind has been listed once (sidecars wait with no policy: deny), so a half-listed cluster is never pushed.
/// 4. An ApiSpec's OpenAPI document may be a key of a ConfigMap in its namespace (<c>spec.openapi.configMapRef</c>):
///    the ConfigMaps are followed too (their data is kept, by namespace and name), and every ApiSpec that names one is
///    read again when it changes, so an edited document is compiled and pushed, and a missing ConfigMap or key leaves
///    the ApiSpec out with the reason. The first publish waits for the ConfigMaps' first list as for every kind's.
/// 5. The replica that leads writes the condition <c>Accepted</c> on each resource through the status subresource
///    (True/Valid, False/Invalid with every error and its path, or False/SetConflict with the set-level reason) with
///    <c>observedGeneration</c>, only when it differs
///    from what the resource shows, so its own status writes (which come back as MODIFIED events) cause no more writes.
/// </summary>
internal sealed class KubernetesPolicySource : IPolicySource, IHostedService, IDisposable
{
    public const string Group = "security.ztm.dev";
    public const string Version = "v1";
    public const string ConditionType = "Accepted";

    /// <summary>The informer name of the ConfigMaps (in the log lines).</summary>
    private const string ConfigMapResource = "ConfigMap";

    /// <summary>kubectl's copy of what was applied: an annotation the size of the resource, for kubectl only.</summary>
    private const string LastApplied = "kubectl.kubernetes.io/last-applied-configuration";

    /// <summary>What a condition message may hold (the CRD's <c>maxLength</c>).</summary>
    private const int MaxMessage = 32768;

    /// <summary>How long start waits for the first lists before the control plane serves without them.</summary>
    private static readonly TimeSpan FirstListWait = TimeSpan.FromSeconds(10);

    private readonly IKubernetes _client;
    private readonly IReplicaLeadership _leadership;
    private readonly TimeProvider _time;
    private readonly ILogger<KubernetesPolicySource> _logger;
    private readonly PolicyKinds _kinds;
    private readonly LogRateLimiter _logLimit;
    private readonly LogRateLimiter _eventLogLimit;
    private readonly Lock _gate = new();
    private readonly Dictionary<ResourceKey, Entry> _entries = [];
    private readonly HashSet<PolicyKind> _listed = [];
    private readonly Dictionary<(string Namespace, string Name), IDictionary<string, string>?> _configMaps = [];
    private bool _configMapsListed;
    private readonly Dictionary<ResourceKey, (string ResourceVersion, Condition Condition)> _written = [];

    /// <summary>Valid resources the last publish left out because of a set-level error, and why (under the lock).</summary>
    private Dictionary<ResourceKey, string> _leftOutBySet = [];
    private readonly TaskCompletionSource _allListed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _statusWake = new(0, 1);
    private readonly List<Task> _running = [];
    private int _disposed;
    private bool _following;
    private ImmutableDictionary<ResourceKey, StoredResource> _resources = ImmutableDictionary<ResourceKey, StoredResource>.Empty;

    public KubernetesPolicySource(IKubernetes client, IReplicaLeadership leadership, TimeProvider time, ILogger<KubernetesPolicySource> logger, PolicyKinds? kinds = null)
    {
        _client = client;
        _leadership = leadership;
        _time = time;
        _logger = logger;
        _kinds = kinds ?? PolicyKinds.Builtin;
        _logLimit = new LogRateLimiter(time, 5, TimeSpan.FromMinutes(1));
        _eventLogLimit = new LogRateLimiter(time, 50, TimeSpan.FromSeconds(10)); // a GitOps sync of many resources stays readable
    }

    public string Location => $"the cluster's {Group}/{Version} custom resources ({_client.BaseUri.GetLeftPart(UriPartial.Authority)})";

    public ImmutableDictionary<ResourceKey, StoredResource> Resources => Volatile.Read(ref _resources);

    public event Action<PolicyChange>? Changed;

    /// <summary>The plural of a kind's custom resources (<c>authorizationpolicies</c>), as the chart's CRDs name them.</summary>
    public static string PluralOf(PolicyKind kind)
    {
        var name = kind.Name.ToLowerInvariant();
        return name.EndsWith('y') ? name[..^1] + "ies" : name.EndsWith('s') ? name + "es" : name + "s";
    }

    public PolicyApplyResult Apply(string source, string yaml, string actor) => throw ManagedWithKubectl();

    public bool Delete(ResourceKey key, string actor) => throw ManagedWithKubectl();

    private static PolicySourceException ManagedWithKubectl() =>
        new($"policy is managed with kubectl in Kubernetes: the control plane reads the {Group} custom resources " +
            "(kubectl apply -f policy.yaml, kubectl delete …; kubectl get ztm -A shows whether each is Accepted)", notServed: true);

    /// <summary>
    /// Starts following the cluster (once) and waits up to <see cref="FirstListWait"/> for every kind's first list;
    /// false when it did not come. <see cref="ConfigStore"/> is built after this (<c>AddKubernetesPolicy</c>), so its
    /// first version holds the cluster's policy: a restart with the same resources keeps the version, as standalone.
    /// </summary>
    public bool WaitForFirstList()
    {
        EnsureFollowing();
        return _allListed.Task.Wait(FirstListWait);
    }

    private void EnsureFollowing()
    {
        lock (_gate)
        {
            if (_following)
            {
                return;
            }
            _following = true;
            foreach (var kind in _kinds.All)
            {
                _running.Add(Task.Run(() => FollowAsync(kind, _stopping.Token), CancellationToken.None));
            }
            _running.Add(Task.Run(() => FollowConfigMapsAsync(_stopping.Token), CancellationToken.None));
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        EnsureFollowing();
        lock (_gate)
        {
            _running.Add(_leadership.RunWhileLeadingAsync(WriteStatusesAsync, _stopping.Token));
        }
        try
        {
            await _allListed.Task.WaitAsync(FirstListWait, _time, cancellationToken);
        }
        catch (TimeoutException)
        {
            ControlPlaneLog.PolicyNotListedYet(_logger, (int)FirstListWait.TotalSeconds);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => KubernetesInformer.StopAsync(_stopping, () =>
    {
        lock (_gate)
        {
            return [.. _running];
        }
    }, cancellationToken);

    /// <summary>Lists one kind, then watches it (<see cref="KubernetesInformer"/>); never throws.</summary>
    private Task FollowAsync(PolicyKind kind, CancellationToken stopping)
    {
        var plural = PluralOf(kind);
        var source = new InformerSource<JsonObject>(
            kind.Name,
            async cancellation =>
            {
                var list = JsonNode.Parse((await _client.CustomObjects.ListClusterCustomObjectAsync<JsonElement>(Group, Version, plural, cancellationToken: cancellation)).GetRawText());
                return ((list?["items"] as JsonArray ?? []).OfType<JsonObject>().ToList(), list?["metadata"]?["resourceVersion"]?.GetValue<string>() ?? "");
            },
            (version, onError, cancellation) => Objects(_client.CustomObjects.WatchListClusterCustomObjectAsync(
                Group, Version, plural, allowWatchBookmarks: true, resourceVersion: version, onError: onError, cancellationToken: cancellation)),
            item => item["metadata"]?["resourceVersion"]?.GetValue<string>());
        return KubernetesInformer.RunAsync(source, new KindHandler(this, kind), _time, stopping);
    }

    /// <summary>Lists, then watches, the ConfigMaps of every namespace (the documents ApiSpecs name); never throws.</summary>
    private Task FollowConfigMapsAsync(CancellationToken stopping)
    {
        var source = new InformerSource<V1ConfigMap>(
            ConfigMapResource,
            async cancellation =>
            {
                var list = await _client.CoreV1.ListConfigMapForAllNamespacesAsync(cancellationToken: cancellation);
                return ((IReadOnlyList<V1ConfigMap>)[.. list.Items], list.Metadata?.ResourceVersion ?? "");
            },
            (version, onError, cancellation) => _client.CoreV1.WatchListConfigMapForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: version, onError: onError, cancellationToken: cancellation),
            c => c.Metadata?.ResourceVersion);
        return KubernetesInformer.RunAsync(source, new ConfigMapHandler(this), _time, stopping);
    }

    private static async IAsyncEnumerable<(WatchEventType, JsonObject)> Objects(IAsyncEnumerable<(WatchEventType, object)> watch)
    {
        await foreach (var (type, item) in watch)
        {
            if (JsonNode.Parse(item is JsonElement element ? element.GetRawText() : KubernetesJson.Serialize(item)) is JsonObject node)
            {
                yield return (type, node);
            }
        }
    }

    /// <summary>One kind's informer events, into the source.</summary>
    private sealed class KindHandler(KubernetesPolicySource source, PolicyKind kind) : IInformerHandler<JsonObject>
    {
        public void Listed(string resource, IReadOnlyList<JsonObject> items, string resourceVersion)
        {
            source.Listed(kind, items);
            ControlPlaneLog.PolicyListed(source._logger, kind.Name, items.Count, resourceVersion);
        }

        public void Changed(string resource, WatchEventType type, JsonObject item)
        {
            if (type == WatchEventType.Deleted)
            {
                source.Remove(kind, item);
            }
            else
            {
                source.Upsert(kind, item, type == WatchEventType.Added ? "added" : "modified");
            }
        }

        public void Relisting(string resource, string resourceVersion) => ControlPlaneLog.PolicyRelist(source._logger, kind.Name, resourceVersion);

        public void Failed(string resource, TimeSpan retryIn, string reason)
        {
            if (source._logLimit.TryAcquire("watch:" + kind.Name, out var suppressed, out _))
            {
                ControlPlaneLog.PolicyWatchFailed(source._logger, kind.Name, retryIn.TotalSeconds, reason, suppressed);
            }
        }
    }

    /// <summary>The ConfigMaps' informer events, into the source.</summary>
    private sealed class ConfigMapHandler(KubernetesPolicySource source) : IInformerHandler<V1ConfigMap>
    {
        public void Listed(string resource, IReadOnlyList<V1ConfigMap> items, string resourceVersion)
        {
            source.ConfigMapsListed(items);
            ControlPlaneLog.PolicyListed(source._logger, resource, items.Count, resourceVersion);
        }

        public void Changed(string resource, WatchEventType type, V1ConfigMap item) => source.ConfigMapChanged(type, item);

        public void Relisting(string resource, string resourceVersion) => ControlPlaneLog.PolicyRelist(source._logger, resource, resourceVersion);

        public void Failed(string resource, TimeSpan retryIn, string reason)
        {
            if (source._logLimit.TryAcquire("watch:" + resource, out var suppressed, out _))
            {
                ControlPlaneLog.PolicyWatchFailed(source._logger, resource, retryIn.TotalSeconds, reason, suppressed);
            }
        }
    }

    private static (string Namespace, string Name) KeyOf(V1ConfigMap map) => (map.Metadata?.NamespaceProperty ?? "", map.Metadata?.Name ?? "");

    /// <summary>A list of the ConfigMaps: they replace what the source held, and every ApiSpec that names one is read again.</summary>
    private void ConfigMapsListed(IReadOnlyList<V1ConfigMap> items)
    {
        lock (_gate)
        {
            _configMaps.Clear();
            foreach (var item in items)
            {
                _configMaps[KeyOf(item)] = item.Data;
            }
            _configMapsListed = true;
            ReadAgain(_ => true);
            Publish("list");
        }
    }

    private void ConfigMapChanged(WatchEventType type, V1ConfigMap item)
    {
        var key = KeyOf(item);
        lock (_gate)
        {
            if (type == WatchEventType.Deleted)
            {
                _configMaps.Remove(key);
            }
            else
            {
                _configMaps[key] = item.Data;
            }
            if (ReadAgain(configMap => configMap == key))
            {
                Publish("watch");
            }
        }
    }

    /// <summary>Reads again every resource that names a ConfigMap <paramref name="which"/> selects; whether any did. Under the lock.</summary>
    private bool ReadAgain(Func<(string Namespace, string Name), bool> which)
    {
        var again = _entries.Values.Where(e => e.ConfigMap is { } configMap && which(configMap)).ToList();
        foreach (var entry in again)
        {
            var read = Read(entry.Kind, entry.Item);
            _entries[read.Key] = read;
            if (read.Wire != entry.Wire && _eventLogLimit.TryAcquire("event", out var suppressed, out _))
            {
                ControlPlaneLog.PolicyResourceEvent(_logger, "re-read", read.KeyText, read.Generation,
                    (read.Errors.Count == 0 ? "valid" : $"invalid ({read.Errors.Count} error(s))") + $": ConfigMap {read.ConfigMap!.Value.Namespace}/{read.ConfigMap.Value.Name} changed", suppressed);
            }
        }
        return again.Count > 0;
    }

    /// <summary>A list of one kind: what it holds replaces what the source held of that kind.</summary>
    private void Listed(PolicyKind kind, IReadOnlyList<JsonObject> items)
    {
        lock (_gate)
        {
            foreach (var key in _entries.Keys.Where(k => k.Kind == kind.Name).ToList())
            {
                _entries.Remove(key);
            }
            foreach (var item in items)
            {
                var entry = Read(kind, item);
                _entries[entry.Key] = entry;
            }
            _listed.Add(kind);
            Publish("list");
        }
    }

    private void Upsert(PolicyKind kind, JsonObject item, string what)
    {
        lock (_gate)
        {
            var entry = Read(kind, item);
            var before = _entries.GetValueOrDefault(entry.Key);
            _entries[entry.Key] = entry;
            if ((before is null || before.Wire != entry.Wire || before.Generation != entry.Generation) && _eventLogLimit.TryAcquire("event", out var suppressed, out _))
            {
                ControlPlaneLog.PolicyResourceEvent(_logger, what, entry.KeyText, entry.Generation, entry.Errors.Count == 0 ? "valid" : $"invalid ({entry.Errors.Count} error(s))", suppressed);
            }
            Publish("watch");
        }
    }

    private void Remove(PolicyKind kind, JsonObject item)
    {
        var key = new ResourceKey(kind.Name, item["metadata"]?["namespace"]?.GetValue<string>() ?? "", item["metadata"]?["name"]?.GetValue<string>() ?? "");
        lock (_gate)
        {
            if (_entries.Remove(key, out var removed))
            {
                _written.Remove(key);
                if (_eventLogLimit.TryAcquire("event", out var suppressed, out _))
                {
                    ControlPlaneLog.PolicyResourceEvent(_logger, "deleted", removed.KeyText, removed.Generation, "removed", suppressed);
                }
                Publish("watch");
            }
        }
    }

    /// <summary>Publishes the valid resources when they differ from what is in force; wakes the status writer. Under the lock.</summary>
    private void Publish(string action)
    {
        WakeStatusWriter();
        if (_listed.Count < _kinds.All.Count || !_configMapsListed)
        {
            return; // not every kind (or the ConfigMaps) listed yet: a part of the cluster's policy is never pushed
        }
        _allListed.TrySetResult();
        var current = Resources;
        var next = _entries.Values.Where(e => e.Resource is not null).ToImmutableDictionary(e => e.Key, e => e.Resource!);
        var leftOut = new Dictionary<ResourceKey, string>();
        var setErrors = PolicyValidator.Validate(next.Values.Select(r => r.Document), _kinds);
        // A set-level error that names resources (two ApiSpecs for one service) leaves them out, as an invalid resource
        // is, and the rest is published: first only those that are new or changed (what is in force stays), then, if
        // the conflict is among those alone, every one it names.
        foreach (var onlyChanged in new[] { true, false })
        {
            var named = setErrors.Where(e => e.Location.Length > 0 && next.Values.Any(r => r.KeyText == e.Location)).ToList();
            if (named.Count == 0)
            {
                break;
            }
            foreach (var error in named)
            {
                var resource = next.Values.First(r => r.KeyText == error.Location);
                if (onlyChanged && current.TryGetValue(resource.Key, out var inForce) && inForce.SameAs(resource))
                {
                    continue;
                }
                leftOut[resource.Key] = error.Message;
                next = next.Remove(resource.Key);
            }
            setErrors = PolicyValidator.Validate(next.Values.Select(r => r.Document), _kinds);
        }
        if (setErrors.Length > 0)
        {
            // A limit of the whole set (the number of authorization rules) names no resource: the last good set stays,
            // and every resource that is not in force as it stands says so.
            var message = $"valid, but the policy set with it is refused, so the last good set stays in force: {string.Join("; ", setErrors.Select(e => e.Message))}";
            foreach (var resource in next.Values.Where(r => !(current.TryGetValue(r.Key, out var inForce) && inForce.SameAs(r))))
            {
                leftOut.TryAdd(resource.Key, message);
            }
            SetLeftOut(leftOut);
            ControlPlaneLog.PolicySetRefused(_logger, string.Join("; ", setErrors));
            return;
        }
        SetLeftOut(leftOut);
        var changed = next.Keys.Union(current.Keys)
            .Where(k => !next.TryGetValue(k, out var n) || !current.TryGetValue(k, out var o) || n.Yaml != o.Yaml)
            .Select(k => $"{k.Kind}/{k.Namespace}/{k.Name}")
            .Order(StringComparer.Ordinal)
            .ToList();
        if (changed.Count == 0)
        {
            return;
        }
        Volatile.Write(ref _resources, next);
        Changed?.Invoke(new PolicyChange(next, action, "kubernetes", changed));
    }

    /// <summary>Records what the last publish left out; the status writer shows it when it changed. Under the lock.</summary>
    private void SetLeftOut(Dictionary<ResourceKey, string> leftOut)
    {
        if (leftOut.Count != _leftOutBySet.Count || leftOut.Any(kv => !_leftOutBySet.TryGetValue(kv.Key, out var why) || why != kv.Value))
        {
            foreach (var (key, why) in leftOut.Where(kv => !_leftOutBySet.ContainsKey(kv.Key)))
            {
                ControlPlaneLog.PolicyResourceLeftOut(_logger, $"{key.Kind}/{key.Namespace}/{key.Name}", why);
            }
            _leftOutBySet = leftOut;
            WakeStatusWriter();
        }
    }

    /// <summary>One custom resource read: its key, generation, what its status shows, and the resource or its errors.</summary>
    private Entry Read(PolicyKind kind, JsonObject item)
    {
        var metadata = item["metadata"] as JsonObject;
        var name = Text(metadata?["name"]) ?? "";
        var ns = Text(metadata?["namespace"]) ?? "";
        var key = new ResourceKey(kind.Name, ns, name);
        var generation = metadata?["generation"] is JsonValue g && g.TryGetValue<long>(out var n) ? n : 0;
        var resourceVersion = Text(metadata?["resourceVersion"]) ?? "";
        var shown = ShownCondition(item);

        // What the policy reader reads: the document as an operator wrote it, without what the API server adds.
        var document = new JsonObject
        {
            ["apiVersion"] = item["apiVersion"]?.DeepClone(),
            ["kind"] = item["kind"]?.DeepClone(),
        };
        var kept = new JsonObject { ["name"] = name, ["namespace"] = ns };
        if (metadata?["labels"] is JsonObject labels)
        {
            kept["labels"] = labels.DeepClone();
        }
        if (metadata?["annotations"] is JsonObject annotations)
        {
            var copy = (JsonObject)annotations.DeepClone();
            copy.Remove(LastApplied);
            if (copy.Count > 0)
            {
                kept["annotations"] = copy;
            }
        }
        document["metadata"] = kept;
        if (item.ContainsKey("spec"))
        {
            document["spec"] = item["spec"]?.DeepClone();
        }

        var errors = new List<PolicyError>();
        var resource = ResourceReader.Read(_kinds, document, new ErrorSink(errors, ""));
        var keyText = $"{key.Kind}/{key.Namespace}/{key.Name}";
        (string, string)? configMap = null;
        if (resource is not null)
        {
            errors.AddRange(PolicyValidator.Validate([new PolicyDocument("", 0, resource)], _kinds));
            if (resource is ApiSpec { Spec.OpenApi.ConfigMap: { } reference })
            {
                configMap = (ns, reference.Name);
            }
            if (errors.Count == 0 && resource is ApiSpec spec)
            {
                // The OpenAPI document is compiled here; sidecars and `ztmctl get` see the compiled form.
                resource = ApiSpecCompiler.Compile(spec, readFile: null, new ErrorSink(errors, ""), reference => ReadConfigMap(ns, reference));
            }
        }
        if (resource is null || errors.Count > 0)
        {
            return new Entry(key, keyText, PluralOf(kind), generation, resourceVersion, shown, null, [.. errors.Select(e => e with { Location = e.Location.Trim() })], document.ToJsonString())
            {
                Kind = kind, Item = item, ConfigMap = configMap,
            };
        }
        // Sidecars get the canonical JSON of the validated model. It is also the text `ztmctl get -o yaml` shows (JSON is
        // YAML), ended by a newline as a YAML document is, so that documents joined with "---" stay apart.
        var wire = Encoding.UTF8.GetString(kind.ToWire(resource));
        var stored = new StoredResource(new PolicyDocument(keyText, 0, resource) { Text = wire + "\n" }, wire + "\n");
        return new Entry(key, keyText, PluralOf(kind), generation, resourceVersion, shown, stored, [], wire) { Kind = kind, Item = item, ConfigMap = configMap };
    }

    /// <summary>The value of a ConfigMap key in <paramref name="ns"/>, as the ConfigMaps were last listed or watched. Under the lock.</summary>
    private string ReadConfigMap(string ns, ConfigMapKeyRef reference)
    {
        if (!_configMaps.TryGetValue((ns, reference.Name), out var data))
        {
            throw new KeyNotFoundException($"ConfigMap {ns}/{reference.Name} does not exist (it is read when it appears)");
        }
        return data is not null && data.TryGetValue(reference.Key, out var text)
            ? text
            : throw new KeyNotFoundException($"ConfigMap {ns}/{reference.Name} has no key '{reference.Key}' in its data (keys: {(data is null || data.Count == 0 ? "none" : string.Join(", ", data.Keys.Order(StringComparer.Ordinal)))})");
    }

    private static Condition? ShownCondition(JsonObject item)
    {
        if (item["status"]?["conditions"] is not JsonArray conditions)
        {
            return null;
        }
        var accepted = conditions.OfType<JsonObject>().FirstOrDefault(c => Text(c["type"]) == ConditionType);
        return accepted is null ? null : new Condition(
            Text(accepted["status"]) ?? "",
            Text(accepted["reason"]) ?? "",
            Text(accepted["message"]) ?? "",
            accepted["observedGeneration"] is JsonValue g && g.TryGetValue<long>(out var n) ? n : -1,
            Text(accepted["lastTransitionTime"]));
    }

    private static string? Text(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    /// <summary>The condition a resource should show. Under the lock.</summary>
    private Condition Desired(Entry entry)
    {
        if (entry.Errors.Count == 0 && _leftOutBySet.TryGetValue(entry.Key, out var why))
        {
            var text = $"not pushed to any sidecar: {why}";
            return new Condition("False", "SetConflict", text.Length > MaxMessage ? text[..(MaxMessage - 1)] + "…" : text, entry.Generation, null);
        }
        if (entry.Errors.Count == 0)
        {
            return new Condition("True", "Valid", "the resource is valid and is pushed to the sidecars it selects", entry.Generation, null);
        }
        var message = new StringBuilder($"{entry.Errors.Count} error(s); not pushed to any sidecar: ");
        for (var i = 0; i < entry.Errors.Count; i++)
        {
            var error = entry.Errors[i];
            var line = (i > 0 ? "; " : "") + (error.Location.Length > 0 ? $"{error.Location}: {error.Message}" : error.Message);
            if (message.Length + line.Length > MaxMessage - 40)
            {
                message.Append(CultureInfo.InvariantCulture, $"; … and {entry.Errors.Count - i} more");
                break;
            }
            message.Append(line);
        }
        return new Condition("False", "Invalid", message.ToString(), entry.Generation, null);
    }

    private void WakeStatusWriter()
    {
        try
        {
            _statusWake.Release();
        }
        catch (SemaphoreFullException)
        {
            // already awake
        }
    }

    /// <summary>The leader's work: the condition <c>Accepted</c> on every resource whose status does not show it yet.</summary>
    private async Task WriteStatusesAsync(CancellationToken leading)
    {
        var backoff = KubernetesInformer.MinBackoff;
        while (!leading.IsCancellationRequested)
        {
            List<(Entry Entry, Condition Condition)> pending;
            lock (_gate)
            {
                pending = [.. _entries.Values
                    .Select(e => (Entry: e, Condition: Desired(e)))
                    .Where(x => !x.Condition.SameAs(x.Entry.Shown)
                        && !(_written.TryGetValue(x.Entry.Key, out var w) && w.ResourceVersion == x.Entry.ResourceVersion && w.Condition.SameAs(x.Condition)))];
            }
            var failed = false;
            foreach (var (entry, condition) in pending)
            {
                try
                {
                    await WriteStatusAsync(entry, condition, leading);
                    lock (_gate)
                    {
                        _written[entry.Key] = (entry.ResourceVersion, condition);
                    }
                    ControlPlaneLog.PolicyStatusWritten(_logger, entry.KeyText, condition.Status, condition.Reason, entry.Generation);
                }
                catch (OperationCanceledException) when (leading.IsCancellationRequested)
                {
                    return;
                }
                catch (HttpOperationException e) when (e.Response.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Conflict)
                {
                    // Deleted, or changed since it was read: the watch brings the news, and the next round decides.
                }
#pragma warning disable CA1031 // the status writer retries whatever the API answers
                catch (Exception e)
#pragma warning restore CA1031
                {
                    failed = true;
                    if (_logLimit.TryAcquire("status", out var suppressed, out _))
                    {
                        ControlPlaneLog.PolicyStatusFailed(_logger, entry.KeyText, backoff.TotalSeconds, KubernetesInformer.Describe(e), suppressed);
                    }
                }
            }
            try
            {
                if (failed)
                {
                    await Task.Delay(KubernetesInformer.Jitter(backoff), _time, leading);
                    backoff = KubernetesInformer.Next(backoff);
                }
                else
                {
                    backoff = KubernetesInformer.MinBackoff;
                    await _statusWake.WaitAsync(leading);
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task WriteStatusAsync(Entry entry, Condition condition, CancellationToken cancellation)
    {
        // The transition time moves only when the status does (as metav1.Condition means it).
        var since = entry.Shown is { } shown && shown.Status == condition.Status && shown.LastTransitionTime is { } kept
            ? kept
            : _time.GetUtcNow().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
        var patch = new JsonObject
        {
            ["status"] = new JsonObject
            {
                ["observedGeneration"] = entry.Generation,
                ["conditions"] = new JsonArray(new JsonObject
                {
                    ["type"] = ConditionType,
                    ["status"] = condition.Status,
                    ["reason"] = condition.Reason,
                    ["message"] = condition.Message,
                    ["observedGeneration"] = entry.Generation,
                    ["lastTransitionTime"] = since,
                }),
            },
        };
        await _client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(
            new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), Group, Version, entry.Key.Namespace, entry.Plural, entry.Key.Name,
            cancellationToken: cancellation);
    }

    /// <summary>Idempotent: the container disposes the one instance once per registration (source and hosted service).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        _stopping.Cancel();
        _stopping.Dispose();
        _statusWake.Dispose();
    }

    private sealed record Entry(
        ResourceKey Key, string KeyText, string Plural, long Generation, string ResourceVersion, Condition? Shown,
        StoredResource? Resource, IReadOnlyList<PolicyError> Errors, string Wire)
    {
        /// <summary>The kind and the custom resource as the API served it: what <see cref="ReadAgain"/> reads again.</summary>
        public required PolicyKind Kind { get; init; }

        public required JsonObject Item { get; init; }

        /// <summary>The ConfigMap (namespace, name) its OpenAPI document comes from, when it names one.</summary>
        public (string Namespace, string Name)? ConfigMap { get; init; }
    }

    private sealed record Condition(string Status, string Reason, string Message, long ObservedGeneration, string? LastTransitionTime)
    {
        public bool SameAs(Condition? other) =>
            other is not null && other.Status == Status && other.Reason == Reason && other.Message == Message && other.ObservedGeneration == ObservedGeneration;
    }
}
