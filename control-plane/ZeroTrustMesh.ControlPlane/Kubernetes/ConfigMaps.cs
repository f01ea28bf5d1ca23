using System.IO.Compression;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace ZeroTrustMesh.ControlPlane.Kubernetes;

/// <summary>
/// The ConfigMap calls every store of the control plane's own state in the cluster shares (the replicas' sidecar
/// reports, anomaly state and counts, decision-log checkpoints): object names for arbitrary keys, gzipped JSON payloads
/// (a ConfigMap holds 1 MiB), create-or-replace, optimistic writes, and one readable line for a failed call.
/// </summary>
internal static class ConfigMaps
{
    /// <summary>What a ConfigMap holds at most (the API server's limit is 1 MiB; the rest is left for metadata).</summary>
    public const int MaxPayloadBytes = 900 * 1024;

    /// <summary>
    /// A ConfigMap name for <paramref name="key"/>: <paramref name="prefix"/> and the key when that is an object name (a
    /// pod's name is), else the prefix and 16 hex digits of the key's SHA-256 (a SPIFFE ID is not an object name).
    /// </summary>
    public static string NameFor(string prefix, string key)
    {
        var name = prefix + key;
        return KubernetesNames.IsSubdomain(name)
            ? name
            : prefix + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..16];
    }

    public static byte[] Zip<T>(T value, JsonTypeInfo<T> type)
    {
        using var zipped = new MemoryStream();
        using (var gzip = new GZipStream(zipped, CompressionLevel.Fastest))
        {
            JsonSerializer.Serialize(gzip, value, type);
        }
        return zipped.ToArray();
    }

    /// <exception cref="InvalidDataException">Not gzip, or not the JSON of <typeparamref name="T"/>.</exception>
    /// <summary>
    /// The gzipped JSON document under <paramref name="key"/> of a map this control plane wrote: a missing key or one
    /// that does not parse is <see cref="InvalidDataException"/> naming <paramref name="location"/> and what was expected.
    /// </summary>
    public static T UnzipKey<T>(V1ConfigMap map, string key, JsonTypeInfo<T> type, string location, string what)
    {
        if (map.BinaryData?.TryGetValue(key, out var zipped) != true || zipped is null)
        {
            throw new InvalidDataException($"{location} has no {key}");
        }
        try
        {
            return Unzip(zipped, type);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{location} key {key} is not {what}: {e.Message}", e);
        }
    }

    public static T Unzip<T>(byte[] bytes, JsonTypeInfo<T> type)
    {
        try
        {
            using var unzipped = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
            return JsonSerializer.Deserialize(unzipped, type) ?? throw new InvalidDataException("it is empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
    }

    /// <summary>The ConfigMap, or null when there is none.</summary>
    public static async Task<V1ConfigMap?> ReadAsync(IKubernetes client, string @namespace, string name, CancellationToken cancellation)
    {
        try
        {
            return await client.CoreV1.ReadNamespacedConfigMapAsync(name, @namespace, cancellationToken: cancellation);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>Writes <paramref name="map"/> whatever is there (only its writer writes it).</summary>
    public static async Task<V1ConfigMap> CreateOrReplaceAsync(IKubernetes client, V1ConfigMap map, CancellationToken cancellation)
    {
        try
        {
            return await client.CoreV1.ReplaceNamespacedConfigMapAsync(map, map.Metadata.Name, map.Metadata.NamespaceProperty, cancellationToken: cancellation);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return await client.CoreV1.CreateNamespacedConfigMapAsync(map, map.Metadata.NamespaceProperty, cancellationToken: cancellation);
        }
    }

    /// <summary>
    /// Writes <paramref name="map"/> over the resourceVersion it carries (none: creates it); null when another writer
    /// came first (409, or 404: deleted meanwhile): read again and apply the change to what is there.
    /// </summary>
    public static async Task<V1ConfigMap?> TryWriteAsync(IKubernetes client, V1ConfigMap map, CancellationToken cancellation)
    {
        try
        {
            return map.Metadata.ResourceVersion is null
                ? await client.CoreV1.CreateNamespacedConfigMapAsync(map, map.Metadata.NamespaceProperty, cancellationToken: cancellation)
                : await client.CoreV1.ReplaceNamespacedConfigMapAsync(map, map.Metadata.Name, map.Metadata.NamespaceProperty, cancellationToken: cancellation);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict
            || (map.Metadata.ResourceVersion is not null && e.Response.StatusCode == HttpStatusCode.NotFound))
        {
            return null;
        }
    }

    /// <summary>Whether <paramref name="e"/> is a failed or unanswered API call (not a bug), when not stopping.</summary>
    public static bool IsApiFailure(Exception e, CancellationToken cancellation) =>
        e is HttpOperationException or HttpRequestException or IOException || (e is OperationCanceledException && !cancellation.IsCancellationRequested);

    /// <summary>One line for a failed API call.</summary>
    public static string Describe(Exception e) =>
        e is HttpOperationException h ? $"the API answered {(int)h.Response.StatusCode} {h.Response.StatusCode}"
        : e is OperationCanceledException ? "the API did not answer in time"
        : e.Message;
}

/// <summary>
/// A ConfigMap that one replica writes about itself, owned by the replica's Pod so the cluster deletes it with the pod
/// (no replica needs the right to delete). The pod is looked up once it is found; outside a pod (a process on a host)
/// there is no owner. Where OwnerReferencesPermissionEnforcement refuses the reference (it wants delete rights on the
/// pod), the map goes without one: readers ignore it once stale instead.
/// </summary>
internal sealed class ReplicaConfigMap(IKubernetes client, string @namespace, string replica)
{
    private List<V1OwnerReference>? _owner;
    private bool _looked;

    /// <summary>Writes <paramref name="map"/> (create or replace); <paramref name="notOwned"/> is told why when it went without an owner.</summary>
    public async Task WriteAsync(V1ConfigMap map, Action<string> notOwned, CancellationToken cancellation)
    {
        map.Metadata.OwnerReferences = await OwnerAsync(cancellation);
        try
        {
            await ConfigMaps.CreateOrReplaceAsync(client, map, cancellation);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Forbidden && map.Metadata.OwnerReferences is not null)
        {
            _owner = null;
            notOwned(ConfigMaps.Describe(e));
            map.Metadata.OwnerReferences = null;
            await ConfigMaps.CreateOrReplaceAsync(client, map, cancellation);
        }
    }

    private async Task<List<V1OwnerReference>?> OwnerAsync(CancellationToken cancellation)
    {
        if (_looked)
        {
            return _owner;
        }
        try
        {
            var pod = await client.CoreV1.ReadNamespacedPodAsync(replica, @namespace, cancellationToken: cancellation);
            _owner = [new V1OwnerReference { ApiVersion = "v1", Kind = "Pod", Name = pod.Metadata.Name, Uid = pod.Metadata.Uid }];
            _looked = true;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            _looked = true; // not a pod of this namespace
        }
        catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
        {
            // asked again at the next write
        }
        return _owner;
    }
}
