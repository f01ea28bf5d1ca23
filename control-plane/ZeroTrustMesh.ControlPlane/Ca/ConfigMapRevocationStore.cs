using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using k8s;
using k8s.Autorest;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// The revocations in force in a ConfigMap (<c>ztm-revocations</c> in the control plane's namespace, key
/// <c>revocations.json</c>, the JSON of <c>revocations.json</c> standalone), shared by every replica:
/// 1. read once when built (the config's first version holds it), then watched: a change another replica stored
///    becomes this replica's <see cref="Current"/> and is raised as <see cref="Changed"/> with the action, actor,
///    subjects and reason that replica recorded in the annotation <c>ztm.dev/last-change</c>, so its audit log and its
///    config version say the same;
/// 2. <see cref="Revise"/> writes with the resourceVersion it last read (optimistic concurrency): on 409 Conflict
///    another replica wrote first, so the list is read again and the change applied to it — no revocation is lost;
/// 3. a watch that ends is resumed from the last resourceVersion, one that fails after a backoff, a 410 Gone by
///    reading the object again. Pruning (<see cref="RevocationPruner"/>) stays leader-only.
/// ConfigMaps are readable more widely than Secrets in many clusters; a revocation names serials and SPIFFE IDs only.
/// </summary>
internal sealed class ConfigMapRevocationStore : IRevocationStore, IHostedService, IDisposable
{
    public const string Name = "ztm-revocations";
    public const string DataKey = "revocations.json";
    public const string LastChangeAnnotation = "ztm.dev/last-change";

    private const int MaxAttempts = 8;
    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    private readonly IKubernetes _client;
    private readonly string _namespace;
    private readonly TimeProvider _time;
    private readonly ILogger<ConfigMapRevocationStore> _logger;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stopping = new();
    private int _disposed;
    private RevocationList _current = RevocationList.Empty;
    private string? _resourceVersion; // of the ConfigMap Current was read from or written as; null: there is none
    private Task _watching = Task.CompletedTask;

    /// <exception cref="IOException">The ConfigMap could not be read.</exception>
    public ConfigMapRevocationStore(IKubernetes client, string @namespace, TimeProvider time, ILogger<ConfigMapRevocationStore> logger)
    {
        _client = client;
        _namespace = @namespace;
        _time = time;
        _logger = logger;
        var (map, _) = ReadAsync(CancellationToken.None).GetAwaiter().GetResult();
        Take(map);
    }

    public string Location => $"ConfigMap {_namespace}/{Name}";

    public RevocationList Current => Volatile.Read(ref _current);

    public event Action<RevocationChange>? Changed;

    public bool Revise(Func<RevocationList, (RevocationList Next, IReadOnlyList<string> Subjects)> change, string action, string actor, string? reason)
    {
        lock (_gate)
        {
            for (var attempt = 1; attempt <= MaxAttempts; attempt++)
            {
                var current = Current;
                var (next, subjects) = change(current);
                if (ReferenceEquals(next, current))
                {
                    return false;
                }
                var written = WriteAsync(next, new LastChange(action, actor, [.. subjects], string.IsNullOrEmpty(reason) ? null : reason)).GetAwaiter().GetResult();
                if (written is null)
                {
                    // Another replica wrote first: apply the change to what it wrote.
                    var (map, _) = ReadAsync(CancellationToken.None).GetAwaiter().GetResult();
                    if (Take(map) is { } theirs)
                    {
                        Changed?.Invoke(theirs);
                    }
                    continue;
                }
                _resourceVersion = written.Metadata.ResourceVersion;
                Volatile.Write(ref _current, next);
                Changed?.Invoke(new RevocationChange(next, action, actor, subjects, reason));
                return true;
            }
            throw new IOException($"{Location} kept changing under {MaxAttempts} attempts to write it; try again");
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _watching = Task.Run(() => FollowAsync(_stopping.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        try
        {
            await _watching.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // stopped, or the host gave up waiting
        }
    }

    /// <summary>The stored ConfigMap (null when there is none) and the resourceVersion to watch from.</summary>
    private async Task<(V1ConfigMap? Map, string ListVersion)> ReadAsync(CancellationToken cancellation)
    {
        try
        {
            var list = await _client.CoreV1.ListNamespacedConfigMapAsync(_namespace, fieldSelector: $"metadata.name={Name}", cancellationToken: cancellation);
            return (list.Items.FirstOrDefault(m => m.Metadata?.Name == Name), list.Metadata?.ResourceVersion ?? "");
        }
        catch (HttpOperationException e)
        {
            throw new IOException($"cannot read {Location}: the API answered {(int)e.Response.StatusCode} {e.Response.StatusCode}: {e.Response.Content}", e);
        }
        catch (HttpRequestException e)
        {
            throw new IOException($"cannot read {Location}: {e.Message}", e);
        }
    }

    /// <summary>Stores <paramref name="next"/> over the version last read; null on a conflict (someone else wrote).</summary>
    private async Task<V1ConfigMap?> WriteAsync(RevocationList next, LastChange change)
    {
        var map = new V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            Metadata = new V1ObjectMeta
            {
                Name = Name,
                NamespaceProperty = _namespace,
                ResourceVersion = _resourceVersion,
                Labels = new Dictionary<string, string> { [SecretCaStore.ManagedByLabel] = SecretCaStore.ManagedBy },
                Annotations = new Dictionary<string, string> { [LastChangeAnnotation] = JsonSerializer.Serialize(change, RevocationChangeJson.Default.LastChange) },
            },
            Data = new Dictionary<string, string> { [DataKey] = FileRevocationStore.Serialize(next) },
        };
        try
        {
            return _resourceVersion is null
                ? await _client.CoreV1.CreateNamespacedConfigMapAsync(map, _namespace)
                : await _client.CoreV1.ReplaceNamespacedConfigMapAsync(map, Name, _namespace);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict)
        {
            return null; // a stale resourceVersion, or created by another replica meanwhile
        }
        catch (HttpOperationException e) when (_resourceVersion is not null && e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null; // deleted meanwhile: read again (none) and create it
        }
        catch (HttpOperationException e)
        {
            throw new IOException($"cannot write {Location}: the API answered {(int)e.Response.StatusCode} {e.Response.StatusCode}: {e.Response.Content}", e);
        }
        catch (HttpRequestException e)
        {
            throw new IOException($"cannot write {Location}: {e.Message}", e);
        }
    }

    /// <summary>
    /// Makes <paramref name="map"/> (null: deleted, none) the current list unless it is what is known already or older;
    /// returns the change to raise, or null. Under the lock.
    /// </summary>
    private RevocationChange? Take(V1ConfigMap? map)
    {
        var version = map?.Metadata?.ResourceVersion;
        if (version == _resourceVersion || IsOlder(version, _resourceVersion))
        {
            return null;
        }
        RevocationList list;
        try
        {
            list = map?.Data is { } data && data.TryGetValue(DataKey, out var json) ? FileRevocationStore.Parse(json, Location) : RevocationList.Empty;
        }
        catch (Exception e) when (e is JsonException or InvalidDataException or FormatException)
        {
            throw new InvalidDataException($"{Location} key {DataKey} is not a revocation list: {e.Message}", e);
        }
        _resourceVersion = version;
        var previous = Current;
        Volatile.Write(ref _current, list);
        var change = map?.Metadata?.Annotations is { } annotations && annotations.TryGetValue(LastChangeAnnotation, out var text)
            ? Read(text)
            : null;
        return list.Entries.SequenceEqual(previous.Entries)
            ? null
            : new RevocationChange(list, change?.Action ?? "sync", change?.Actor ?? "cluster", change?.Subjects ?? [], change?.Reason);
    }

    /// <summary>resourceVersions are opaque, but the API server's are etcd revisions: a smaller number is an older write.</summary>
    private static bool IsOlder(string? version, string? than) =>
        version is not null && than is not null
        && long.TryParse(version, NumberStyles.None, CultureInfo.InvariantCulture, out var v)
        && long.TryParse(than, NumberStyles.None, CultureInfo.InvariantCulture, out var t) && v < t;

    private static LastChange? Read(string text)
    {
        try
        {
            return JsonSerializer.Deserialize(text, RevocationChangeJson.Default.LastChange);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private void Apply(V1ConfigMap? map)
    {
        lock (_gate)
        {
            if (Take(map) is { } change)
            {
                CoordinationLog.RevocationsFollowed(_logger, change.Action, change.Actor, change.List.Count, _resourceVersion ?? "(deleted)");
                Changed?.Invoke(change);
            }
        }
    }

    /// <summary>Watches the ConfigMap; never throws but when stopping.</summary>
    private async Task FollowAsync(CancellationToken stopping)
    {
        var backoff = MinBackoff;
        string? from = null; // null: read again
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                if (from is null)
                {
                    var (map, listVersion) = await ReadAsync(stopping);
                    Apply(map);
                    from = listVersion;
                }
                Exception? failure = null;
                var events = 0;
                await foreach (var (type, map) in _client.CoreV1.WatchListNamespacedConfigMapAsync(
                    _namespace, allowWatchBookmarks: true, fieldSelector: $"metadata.name={Name}", resourceVersion: from,
                    onError: e => failure ??= e, cancellationToken: stopping))
                {
                    events++;
                    backoff = MinBackoff;
                    from = map.Metadata?.ResourceVersion ?? from;
                    switch (type)
                    {
                        case WatchEventType.Added or WatchEventType.Modified when map.Metadata?.Name == Name:
                            Apply(map);
                            break;
                        case WatchEventType.Deleted when map.Metadata?.Name == Name:
                            Apply(null);
                            break;
                    }
                }
                if (failure is KubernetesException { Status.Code: (int)HttpStatusCode.Gone })
                {
                    from = null;
                    continue;
                }
                if (failure is not null)
                {
                    throw failure;
                }
                if (events == 0)
                {
                    await Task.Delay(backoff, _time, stopping); // do not spin on a server that closes every watch
                    backoff = backoff * 2 > MaxBackoff ? MaxBackoff : backoff * 2;
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // a watch loop outlives every failure of the API and retries
            catch (Exception e)
#pragma warning restore CA1031
            {
                if (e is HttpOperationException { Response.StatusCode: HttpStatusCode.Gone })
                {
                    from = null;
                }
                CoordinationLog.RevocationsWatchFailed(_logger, backoff.TotalSeconds, e.Message);
                try
                {
                    await Task.Delay(backoff * (0.8 + (0.4 * Random.Shared.NextDouble())), _time, stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                backoff = backoff * 2 > MaxBackoff ? MaxBackoff : backoff * 2;
            }
        }
    }

    /// <summary>Idempotent: the container disposes the one instance once per registration (store or leadership, and hosted service).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        _stopping.Cancel();
        _stopping.Dispose();
    }

    /// <summary>What the replica that stored a list recorded about the change, for the others' audit logs.</summary>
    internal sealed record LastChange(string Action, string Actor, List<string> Subjects, string? Reason);
}

[JsonSerializable(typeof(ConfigMapRevocationStore.LastChange))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class RevocationChangeJson : JsonSerializerContext;
