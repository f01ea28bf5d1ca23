using System.Globalization;
using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Ca;

namespace ZeroTrustMesh.ControlPlane.Config;

/// <summary>
/// Config versions every replica agrees on (<c>--kubernetes</c>): a sidecar that reconnects to another replica must get
/// the same version for the same content, or it would count as a change (and <c>ztmctl status</c> as out of sync). Each
/// replica composes its config from the same cluster state, but counts on its own; so the numbers live in one ConfigMap
/// (<c>ztm-config-versions</c>): <c>latest</c>, and a key per content digest naming its version.
/// 1. A digest already there has its version (whichever replica met that content first).
/// 2. A new digest gets <c>latest + 1</c>, written with the resourceVersion read (409 Conflict: another replica wrote
///    first, read again — perhaps it has just numbered this very content).
/// 3. Only the newest <see cref="Kept"/> digests are kept: an older content that comes back gets a new number.
/// </summary>
internal sealed class SharedConfigVersions(IKubernetes client, string @namespace)
{
    public const string Name = "ztm-config-versions";
    public const string LatestKey = "latest";
    public const int Kept = 64;
    private const int MaxAttempts = 8;

    public string Location => $"ConfigMap {@namespace}/{Name}";

    /// <summary>The version of the content with <paramref name="digest"/> (hex), at least <paramref name="atLeast"/> when new.</summary>
    /// <exception cref="IOException">The ConfigMap could not be read or written.</exception>
    public long VersionOf(string digest, long atLeast)
    {
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            var map = Read();
            var data = map?.Data is { } existing ? new Dictionary<string, string>(existing) : [];
            if (data.TryGetValue(digest, out var known) && Parse(known) is { } version)
            {
                return version;
            }
            var next = Math.Max((data.TryGetValue(LatestKey, out var latest) ? Parse(latest) : null) ?? 0, atLeast - 1) + 1;
            data[digest] = Format(next);
            data[LatestKey] = Format(next);
            foreach (var old in data.Where(d => d.Key != LatestKey).OrderByDescending(d => Parse(d.Value) ?? 0).Skip(Kept).Select(d => d.Key).ToList())
            {
                data.Remove(old);
            }
            if (Write(map, data))
            {
                return next;
            }
        }
        throw new IOException($"{Location} kept changing under {MaxAttempts} attempts to write it");
    }

    private V1ConfigMap? Read()
    {
        try
        {
            return client.CoreV1.ReadNamespacedConfigMap(Name, @namespace);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        catch (HttpOperationException e)
        {
            throw new IOException($"cannot read {Location}: the API answered {(int)e.Response.StatusCode} {e.Response.StatusCode}", e);
        }
        catch (HttpRequestException e)
        {
            throw new IOException($"cannot read {Location}: {e.Message}", e);
        }
    }

    /// <summary>False when another replica wrote first.</summary>
    private bool Write(V1ConfigMap? read, Dictionary<string, string> data)
    {
        var map = new V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            Metadata = new V1ObjectMeta
            {
                Name = Name,
                NamespaceProperty = @namespace,
                ResourceVersion = read?.Metadata?.ResourceVersion,
                Labels = new Dictionary<string, string> { [SecretCaStore.ManagedByLabel] = SecretCaStore.ManagedBy },
            },
            Data = data,
        };
        try
        {
            if (read is null)
            {
                client.CoreV1.CreateNamespacedConfigMap(map, @namespace);
            }
            else
            {
                client.CoreV1.ReplaceNamespacedConfigMap(map, Name, @namespace);
            }
            return true;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode is HttpStatusCode.Conflict or HttpStatusCode.NotFound)
        {
            return false;
        }
        catch (HttpOperationException e)
        {
            throw new IOException($"cannot write {Location}: the API answered {(int)e.Response.StatusCode} {e.Response.StatusCode}", e);
        }
        catch (HttpRequestException e)
        {
            throw new IOException($"cannot write {Location}: {e.Message}", e);
        }
    }

    private static long? Parse(string text) => long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;

    private static string Format(long version) => version.ToString(CultureInfo.InvariantCulture);
}
