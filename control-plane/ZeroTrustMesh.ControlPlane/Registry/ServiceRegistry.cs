using System.Collections.Concurrent;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Registry;

/// <summary>One registered sidecar: where it listens and the one identity it may present.</summary>
internal sealed record RegisteredEndpoint(
    string Service,
    SpiffeId Identity,
    string InboundAddress,
    IReadOnlyList<int> HttpPorts,
    IReadOnlyList<int> TcpPorts,
    string? ServiceAddress,
    DateTimeOffset ExpiresAt);

/// <summary>
/// Where each service's sidecars are. In memory: sidecars re-register as a heartbeat, so a restarted
/// control plane relearns the mesh within one <see cref="Ttl"/>; an endpoint that stops heartbeating drops out.
/// A workload registers only the service named after its own identity (<c>sa.ns</c>).
/// </summary>
internal sealed class ServiceRegistry(TimeProvider time)
{
    public static readonly TimeSpan Ttl = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<(SpiffeId Identity, string InboundAddress), RegisteredEndpoint> _endpoints = new();

    /// <summary>The service a workload identity may register: <c>spiffe://td/ns/shop/sa/orders</c> → <c>orders.shop</c>.</summary>
    public static string? ServiceOf(SpiffeId identity) =>
        identity.TryGetWorkload(out var ns, out var sa) ? $"{sa}.{ns}" : null;

    public RegisteredEndpoint Register(SpiffeId identity, string inboundAddress, IReadOnlyList<int> httpPorts, IReadOnlyList<int> tcpPorts, string? serviceAddress)
    {
        var service = ServiceOf(identity) ?? throw new ArgumentException($"'{identity}' is not a workload identity");
        var endpoint = new RegisteredEndpoint(service, identity, inboundAddress, httpPorts, tcpPorts, serviceAddress, time.GetUtcNow() + Ttl + Ttl);
        _endpoints[(identity, inboundAddress)] = endpoint;
        return endpoint;
    }

    /// <summary>Live endpoints of a service named <c>orders.shop</c>, or <c>orders</c> when only one namespace has it.</summary>
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

    /// <summary>Live endpoints whose service address is <paramref name="address"/> ("ip:port" with the port one of theirs, or "ip").</summary>
    public IReadOnlyList<RegisteredEndpoint> ResolveAddress(string address)
    {
        var (host, port) = SplitHostPort(address);
        return [.. Live().Where(e => e.ServiceAddress == host && (port is null || e.HttpPorts.Contains(port.Value) || e.TcpPorts.Contains(port.Value)))];
    }

    private List<RegisteredEndpoint> Live()
    {
        var now = time.GetUtcNow();
        foreach (var stale in _endpoints.Where(e => e.Value.ExpiresAt <= now).ToList())
        {
            _endpoints.TryRemove(stale);
        }
        return [.. _endpoints.Values];
    }

    private static (string Host, int? Port) SplitHostPort(string address)
    {
        var colon = address.LastIndexOf(':');
        return colon > 0 && int.TryParse(address.AsSpan(colon + 1), out var port) && !address.EndsWith(']')
            ? (address[..colon].Trim('[', ']'), port)
            : (address.Trim('[', ']'), null);
    }
}
