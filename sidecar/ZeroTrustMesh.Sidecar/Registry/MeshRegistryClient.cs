using System.Collections.Frozen;
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
/// every <see cref="HeartbeatInterval"/>) and resolves destinations through a <see cref="ResolveCache{TKey,TValue}"/>:
/// an answer is refreshed in the background once it is <see cref="Freshness"/> old, and the last known one keeps
/// being served while the control plane is unreachable, so no request waits on the control plane for a destination
/// it has resolved before.
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
    private readonly ResolveCache<ResolveKey, IReadOnlyList<Destination>> _cache;

    public MeshRegistryClient(SidecarOptions options, IdentityState state, CertificateRotator rotator, TimeProvider time, ILogger<MeshRegistryClient> logger)
    {
        _options = options;
        _state = state;
        _rotator = rotator;
        _time = time;
        _logger = logger;
        _channel = ControlPlaneChannel.Create(options.ControlPlane, () => state.Bundle ?? options.BootstrapBundle, () => state.Valid?.Certificate, time);
        _client = new Proto.V1.Registry.RegistryClient(_channel);
        _cache = new(Freshness, time, (key, e) =>
        {
            NoteRefusal(e);
            SidecarLog.RegistryCallFailed(logger, "resolve", $"{Describe(e)}; using the last known endpoints of {key.Name}");
        });
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
                NoteRefusal(e);
                SidecarLog.RegistryCallFailed(_logger, "register", $"{e.StatusCode}: {e.Status.Detail}");
            }
        }
        while (await timer.WaitForNextTickAsync(stopping));
    }

    /// <summary>Endpoints of <paramref name="service"/> ("orders" or "orders.shop").</summary>
    /// <exception cref="RegistryUnavailableException">The control plane cannot be asked and the service was never resolved.</exception>
    public ValueTask<IReadOnlyList<Destination>> ResolveServiceAsync(string service, CancellationToken cancellation) =>
        ResolveAsync(new ResolveKey(ByAddress: false, service), cancellation);

    /// <summary>Endpoints whose service address is <paramref name="address"/> (the original destination of captured traffic).</summary>
    /// <exception cref="RegistryUnavailableException">The control plane cannot be asked and the address was never resolved.</exception>
    public ValueTask<IReadOnlyList<Destination>> ResolveAddressAsync(IPEndPoint address, CancellationToken cancellation) =>
        ResolveAsync(new ResolveKey(ByAddress: true, address.ToString()), cancellation);

    private async ValueTask<IReadOnlyList<Destination>> ResolveAsync(ResolveKey key, CancellationToken cancellation)
    {
        try
        {
            return await _cache.GetAsync(key, _client, static (client, key) => CallResolveAsync(client, key), cancellation);
        }
        catch (RpcException e)
        {
            NoteRefusal(e);
            throw new RegistryUnavailableException($"the control plane's registry did not answer ({Describe(e)}) and '{key.Name}' was never resolved", e);
        }
    }

    /// <summary>One Resolve call, shared by every request waiting for it: bounded by its deadline, not by any one caller.</summary>
    private static async Task<IReadOnlyList<Destination>> CallResolveAsync(Proto.V1.Registry.RegistryClient client, ResolveKey key)
    {
        var request = key.ByAddress ? new ResolveRequest { Address = key.Name } : new ResolveRequest { Service = key.Name };
        var response = await client.ResolveAsync(request, deadline: DateTime.UtcNow.AddSeconds(3));
        return [.. response.Endpoints.Select(ToDestination).OfType<Destination>()];
    }

    /// <summary>A refusal that says this sidecar's certificate is revoked makes it not ready.</summary>
    private void NoteRefusal(Exception e)
    {
        if (e is RpcException refusal)
        {
            _state.NoteRefusal(refusal);
        }
    }

    private static string Describe(Exception e) => e is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message;

    private readonly record struct ResolveKey(bool ByAddress, string Name);

    private static Destination? ToDestination(ServiceEndpoint e) =>
        SpiffeId.TryParse(e.SpiffeId, out var id) && IPEndPoint.TryParse(e.InboundAddress, out var inbound)
            ? new Destination(e.Service, id, inbound, [.. e.HttpPorts.Select(p => (int)p)], [.. e.TcpPorts.Select(p => (int)p)])
            {
                ServicePorts = e.ServicePorts.ToFrozenDictionary(p => (int)p.Key, p => (int)p.Value),
                L4Ports = [.. e.L4Ports.Where(p => e.HttpPorts.Contains(p)).Select(p => (int)p)],
            }
            : null; // no identity: an endpoint without a sidecar, never sent to (the mesh sends no plaintext)

    public override void Dispose()
    {
        _channel.Dispose();
        base.Dispose();
    }
}

/// <summary>A destination could not be resolved: the control plane's registry did not answer, and nothing was known of it.</summary>
internal sealed class RegistryUnavailableException(string message, Exception inner) : Exception(message, inner);
