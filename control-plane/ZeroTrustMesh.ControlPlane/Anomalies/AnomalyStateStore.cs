using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Kubernetes;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>
/// Where the anomaly detector's state is kept between restarts and shared between replicas (the leader writes it, the
/// others follow it): standalone the data directory (<see cref="FileAnomalyStateStore"/>), in Kubernetes a ConfigMap
/// (<see cref="ConfigMapAnomalyStateStore"/>).
/// </summary>
internal interface IAnomalyStateStore
{
    /// <summary>Where it is, for messages.</summary>
    string Location { get; }

    /// <summary>The stored state; null when there is none.</summary>
    /// <exception cref="InvalidDataException">It is there but does not parse.</exception>
    /// <exception cref="IOException">It cannot be read.</exception>
    Task<AnomalyStateDocument?> LoadAsync(CancellationToken cancellation);

    /// <exception cref="IOException">It cannot be written.</exception>
    Task SaveAsync(AnomalyStateDocument state, CancellationToken cancellation);
}

/// <summary>Standalone: <c>anomalies.json</c> in the data directory, replaced whole.</summary>
internal sealed class FileAnomalyStateStore(string dataDir) : IAnomalyStateStore
{
    private readonly string _path = Path.Combine(dataDir, "anomalies.json");

    public string Location => _path;

    public Task<AnomalyStateDocument?> LoadAsync(CancellationToken cancellation)
    {
        if (!File.Exists(_path))
        {
            return Task.FromResult<AnomalyStateDocument?>(null);
        }
        try
        {
            return Task.FromResult(JsonSerializer.Deserialize(File.ReadAllText(_path), AnomalyStateJson.Default.AnomalyStateDocument));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{_path} is not anomaly state: {e.Message}", e);
        }
    }

    public Task SaveAsync(AnomalyStateDocument state, CancellationToken cancellation)
    {
        AtomicFile.WriteOwnerOnly(_path, JsonSerializer.Serialize(state, AnomalyStateJson.Default.AnomalyStateDocument));
        return Task.CompletedTask;
    }
}

/// <summary>
/// Kubernetes: ConfigMap <c>ztm-anomalies</c> in the control plane's namespace, the state gzipped in binaryData
/// <c>state.json.gz</c>, a summary for <c>kubectl</c> in data. Only the leader writes it. When the state does not fit
/// (<see cref="ConfigMaps.MaxPayloadBytes"/>), the least recently seen normal tracks are left out (counted in
/// <see cref="AnomalyStateDocument.LeftOut"/>) until it does; restricted tracks are always kept.
/// </summary>
internal sealed class ConfigMapAnomalyStateStore(IKubernetes client, string @namespace) : IAnomalyStateStore
{
    public const string Name = "ztm-anomalies";
    public const string StateKey = "state.json.gz";

    public string Location => $"ConfigMap {@namespace}/{Name}";

    public async Task<AnomalyStateDocument?> LoadAsync(CancellationToken cancellation)
    {
        V1ConfigMap? map;
        try
        {
            map = await ConfigMaps.ReadAsync(client, @namespace, Name, cancellation);
        }
        catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
        {
            throw new IOException($"cannot read {Location}: {ConfigMaps.Describe(e)}", e);
        }
        if (map is null)
        {
            return null;
        }
        return ConfigMaps.UnzipKey(map, StateKey, AnomalyStateJson.Default.AnomalyStateDocument, Location, "anomaly state");
    }

    public async Task SaveAsync(AnomalyStateDocument state, CancellationToken cancellation)
    {
        var (fitted, zipped) = Fit(state);
        var map = new V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            Metadata = new V1ObjectMeta
            {
                Name = Name,
                NamespaceProperty = @namespace,
                Labels = new Dictionary<string, string> { [SecretCaStore.ManagedByLabel] = SecretCaStore.ManagedBy },
            },
            Data = new Dictionary<string, string>
            {
                ["savedAt"] = fitted.SavedAt.ToString("O", CultureInfo.InvariantCulture),
                ["tracks"] = fitted.Tracks.Count.ToString(CultureInfo.InvariantCulture),
                ["restricted"] = fitted.Tracks.Count(t => t.State != AnomalyState.Normal).ToString(CultureInfo.InvariantCulture),
                ["leftOut"] = fitted.LeftOut.ToString(CultureInfo.InvariantCulture),
            },
            BinaryData = new Dictionary<string, byte[]> { [StateKey] = zipped },
        };
        try
        {
            await ConfigMaps.CreateOrReplaceAsync(client, map, cancellation);
        }
        catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
        {
            throw new IOException($"cannot write {Location}: {ConfigMaps.Describe(e)}", e);
        }
    }

    /// <summary>The state, with normal tracks halved until it fits a ConfigMap.</summary>
    internal static (AnomalyStateDocument State, byte[] Zipped) Fit(AnomalyStateDocument state)
    {
        while (true)
        {
            var zipped = ConfigMaps.Zip(state, AnomalyStateJson.Default.AnomalyStateDocument);
            var normal = state.Tracks.Count(t => t.State == AnomalyState.Normal);
            if (zipped.Length <= ConfigMaps.MaxPayloadBytes || normal == 0)
            {
                return (state, zipped);
            }
            // Tracks are stored restricted first, then most recently seen first: the tail is the least recently seen normal ones.
            var drop = (normal + 1) / 2;
            state = state with { Tracks = state.Tracks[..^drop], LeftOut = state.LeftOut + drop };
        }
    }
}

[JsonSerializable(typeof(AnomalyStateDocument))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, UseStringEnumConverter = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class AnomalyStateJson : JsonSerializerContext;
