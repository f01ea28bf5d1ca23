using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Registry;

/// <summary>
/// The registry standalone: sidecars register and re-register as a heartbeat; an endpoint that stops heartbeating
/// drops out after two <see cref="Ttl"/>s. The endpoints are kept in memory and in <c>registry.json</c> (0600), written
/// at most once a <see cref="SaveDelay"/> after they change (a heartbeat changes nothing) and when the control plane
/// stops, so a restarted control plane answers with the endpoints it knew instead of nothing until every sidecar has
/// heartbeated again (a restart failed requests with "no endpoints" for up to a heartbeat interval). Endpoints read
/// back at start live one <see cref="Ttl"/>: their sidecars, if still there, re-register well within it.
/// </summary>
internal sealed class LocalServiceRegistry : IServiceRegistry, IHostedService, IDisposable
{
    public static readonly TimeSpan DefaultTtl = TimeSpan.FromSeconds(30);

    /// <summary>A burst of registrations (a mesh starting) becomes one write.</summary>
    public static readonly TimeSpan SaveDelay = TimeSpan.FromSeconds(1);

    private readonly ConcurrentDictionary<(SpiffeId Identity, string InboundAddress), RegisteredEndpoint> _endpoints = new();
    private readonly string _path;
    private readonly TimeProvider _time;
    private readonly ILogger<LocalServiceRegistry> _logger;
    private readonly ITimer _save;
    private readonly Lock _saving = new();
    private int _dirty;

    public LocalServiceRegistry(ControlPlaneOptions options, TimeProvider time, ILogger<LocalServiceRegistry> logger)
    {
        _path = Path.Combine(options.DataDir, "registry.json");
        _time = time;
        _logger = logger;
        _save = time.CreateTimer(_ => Save(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        Load();
    }

    public TimeSpan Ttl => DefaultTtl;

    public RegisteredEndpoint? Register(SpiffeId identity, string inboundAddress, IReadOnlyList<int> httpPorts, IReadOnlyList<int> tcpPorts, string? serviceAddress)
    {
        var service = RegisteredEndpoint.ServiceOf(identity) ?? throw new ArgumentException($"'{identity}' is not a workload identity");
        var endpoint = new RegisteredEndpoint(service, identity, inboundAddress, httpPorts, tcpPorts, serviceAddress, _time.GetUtcNow() + Ttl + Ttl);
        var key = (identity, inboundAddress);
        var changed = !_endpoints.TryGetValue(key, out var previous) || !previous.SameAs(endpoint);
        _endpoints[key] = endpoint;
        if (changed)
        {
            MarkChanged();
        }
        return endpoint;
    }

    public IReadOnlyList<RegisteredEndpoint> ResolveName(string name)
    {
        var live = Live();
        var exact = live.Where(e => e.Service == name).ToList();
        if (exact.Count > 0 || name.Contains('.', StringComparison.Ordinal))
        {
            return exact;
        }
        var byShortName = live.Where(e => e.Service.StartsWith(name + ".", StringComparison.Ordinal)).ToList();
        return byShortName.Select(e => e.Service).Distinct().Count() == 1 ? byShortName : [];
    }

    public IReadOnlyList<RegisteredEndpoint> ResolveAddress(string address)
    {
        var (host, port) = SplitHostPort(address);
        return [.. Live().Where(e => e.ServiceAddress == host && (port is null || e.HttpPorts.Contains(port.Value) || e.TcpPorts.Contains(port.Value)))];
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>A graceful stop writes what changed since the last save.</summary>
    public Task StopAsync(CancellationToken cancellationToken)
    {
        Save();
        return Task.CompletedTask;
    }

    private List<RegisteredEndpoint> Live()
    {
        var now = _time.GetUtcNow();
        var removed = false;
        foreach (var stale in _endpoints.Where(e => e.Value.ExpiresAt <= now).ToList())
        {
            removed |= _endpoints.TryRemove(stale);
        }
        if (removed)
        {
            MarkChanged();
        }
        return [.. _endpoints.Values];
    }

    private void MarkChanged()
    {
        if (Interlocked.Exchange(ref _dirty, 1) == 0)
        {
            _save.Change(SaveDelay, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Writes the endpoints if they changed; never throws (it runs on a timer): a failed write is retried at the next change.</summary>
    private void Save()
    {
        lock (_saving)
        {
            if (Interlocked.Exchange(ref _dirty, 0) == 0)
            {
                return;
            }
            try
            {
                var records = _endpoints.Values
                    .OrderBy(e => e.Identity!.Value.Value, StringComparer.Ordinal).ThenBy(e => e.InboundAddress, StringComparer.Ordinal)
                    .Select(e => new EndpointRecord(e.Identity!.Value.Value, e.InboundAddress, [.. e.HttpPorts], [.. e.TcpPorts], e.ServiceAddress))
                    .ToList();
                AtomicFile.WriteOwnerOnly(_path, JsonSerializer.Serialize(records, RegistryJson.Default.ListEndpointRecord));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                ControlPlaneLog.RegistryNotSaved(_logger, _path, e.Message);
            }
        }
    }

    private void Load()
    {
        if (!File.Exists(_path))
        {
            return;
        }
        try
        {
            var expiresAt = _time.GetUtcNow() + Ttl;
            foreach (var record in JsonSerializer.Deserialize(File.ReadAllText(_path), RegistryJson.Default.ListEndpointRecord) ?? [])
            {
                if (SpiffeId.TryParse(record.SpiffeId, out var id, out _) && RegisteredEndpoint.ServiceOf(id) is { } service)
                {
                    _endpoints[(id, record.InboundAddress)] = new RegisteredEndpoint(service, id, record.InboundAddress, record.HttpPorts, record.TcpPorts, record.ServiceAddress, expiresAt);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            // Only a head start: the sidecars register again within a heartbeat.
            ControlPlaneLog.RegistryNotLoaded(_logger, _path, e.Message);
        }
    }

    private static (string Host, int? Port) SplitHostPort(string address)
    {
        var colon = address.LastIndexOf(':');
        return colon > 0 && int.TryParse(address.AsSpan(colon + 1), out var port) && !address.EndsWith(']')
            ? (address[..colon].Trim('[', ']'), port)
            : (address.Trim('[', ']'), null);
    }

    public void Dispose() => _save.Dispose();
}

internal sealed record EndpointRecord(string SpiffeId, string InboundAddress, int[] HttpPorts, int[] TcpPorts, string? ServiceAddress);

[JsonSerializable(typeof(List<EndpointRecord>))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class RegistryJson : JsonSerializerContext;
