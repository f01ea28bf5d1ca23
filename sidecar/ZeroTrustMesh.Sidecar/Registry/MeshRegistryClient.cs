using System.Collections.Concurrent;
using System.Net;
using Grpc.Core;
using Grpc.Net.Client;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.Registry;

/// <summary>
/// This sidecar's view of the control plane's service registry: it announces its own endpoint (a heartbeat
/// every <see cref="HeartbeatInterval"/>) and resolves destinations, caching answers for <see cref="Freshness"/>
/// and serving the last known answer while the control plane is unreachable.
/// </summary>
internal sealed class MeshRegistryClient : BackgroundService
{
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(10);
    public static readonly TimeSpan Freshness = TimeSpan.FromSeconds(5);

    private readonly GrpcChannel _channel;
    private readonly Proto.V1.Registry.RegistryClient _client;
    private readonly SidecarOptions _options;
    private readonly IdentityState _state;
    private readonly CertificateRotator _rotator;
    private readonly TimeProvider _time;
    private readonly ILogger<MeshRegistryClient> _logger;
    private readonly ConcurrentDictionary<string, (IReadOnlyList<Destination> Endpoints, DateTimeOffset At)> _cache = new();

    public MeshRegistryClient(SidecarOptions options, IdentityState state, CertificateRotator rotator, TimeProvider time, ILogger<MeshRegistryClient> logger)
    {
        _options = options;
        _state = state;
        _rotator = rotator;
        _time = time;
        _logger = logger;
        _channel = ControlPlaneChannel.Create(options.ControlPlane, () => state.Current?.Bundle ?? options.BootstrapBundle, () => state.Valid?.Certificate, time);
        _client = new Proto.V1.Registry.RegistryClient(_channel);
    }

    public bool Registered { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        try
        {
            await _rotator.FirstIdentity.WaitAsync(stopping);
        }
        catch (Exception) when (!stopping.IsCancellationRequested)
        {
            return; // no identity, nothing to announce
        }
        var request = new RegisterRequest { Endpoint = new ServiceEndpoint { InboundAddress = _options.InboundEndpoint.ToString(), ServiceAddress = _options.ServiceAddress?.ToString() ?? "" } };
        request.Endpoint.HttpPorts.AddRange(_options.AppPorts.Select(p => (uint)p));
        request.Endpoint.TcpPorts.AddRange(_options.TcpPorts.Select(p => (uint)p));
        using var timer = new PeriodicTimer(HeartbeatInterval, _time);
        do
        {
            try
            {
                await _client.RegisterAsync(request, deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: stopping);
                if (!Registered)
                {
                    SidecarLog.Registered(_logger, _options.InboundEndpoint.ToString());
                }
                Registered = true;
            }
            catch (RpcException e) when (!stopping.IsCancellationRequested)
            {
                SidecarLog.RegistryCallFailed(_logger, "register", $"{e.StatusCode}: {e.Status.Detail}");
            }
        }
        while (await timer.WaitForNextTickAsync(stopping));
    }

    /// <summary>Endpoints of <paramref name="service"/> ("orders" or "orders.shop").</summary>
    public Task<IReadOnlyList<Destination>> ResolveServiceAsync(string service, CancellationToken cancellation) =>
        ResolveAsync("name:" + service, new ResolveRequest { Service = service }, cancellation);

    /// <summary>Endpoints whose service address is <paramref name="address"/> (the original destination of captured traffic).</summary>
    public Task<IReadOnlyList<Destination>> ResolveAddressAsync(IPEndPoint address, CancellationToken cancellation) =>
        ResolveAsync("addr:" + address, new ResolveRequest { Address = address.ToString() }, cancellation);

    private async Task<IReadOnlyList<Destination>> ResolveAsync(string key, ResolveRequest request, CancellationToken cancellation)
    {
        var now = _time.GetUtcNow();
        if (_cache.TryGetValue(key, out var cached) && now - cached.At < Freshness)
        {
            return cached.Endpoints;
        }
        try
        {
            var response = await _client.ResolveAsync(request, deadline: DateTime.UtcNow.AddSeconds(3), cancellationToken: cancellation);
            IReadOnlyList<Destination> endpoints = [.. response.Endpoints.Select(ToDestination).OfType<Destination>()];
            _cache[key] = (endpoints, now);
            return endpoints;
        }
        catch (RpcException e) when (cached.Endpoints is not null)
        {
            // Control plane unreachable: keep routing with what we knew.
            SidecarLog.RegistryCallFailed(_logger, "resolve", $"{e.StatusCode}: {e.Status.Detail}; using the last known endpoints");
            return cached.Endpoints;
        }
    }

    private static Destination? ToDestination(ServiceEndpoint e) =>
        SpiffeId.TryParse(e.SpiffeId, out var id) && IPEndPoint.TryParse(e.InboundAddress, out var inbound)
            ? new Destination(e.Service, id, inbound, [.. e.HttpPorts.Select(p => (int)p)], [.. e.TcpPorts.Select(p => (int)p)])
            : null;

    public override void Dispose()
    {
        _channel.Dispose();
        base.Dispose();
    }
}
