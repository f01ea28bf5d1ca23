using System.Net;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar.Registry;

/// <summary>One endpoint of a destination service: its sidecar's inbound address and the only identity it may present.</summary>
internal sealed record Destination(string Service, SpiffeId Identity, IPEndPoint Inbound, IReadOnlyList<int> HttpPorts, IReadOnlyList<int> TcpPorts)
{
    /// <summary>Kubernetes: a Service port a client dials → the endpoint's port it reaches (targetPort). Empty standalone.</summary>
    public IReadOnlyDictionary<int, int> ServicePorts { get; init; } = System.Collections.Frozen.FrozenDictionary<int, int>.Empty;

    /// <summary>Those of <see cref="HttpPorts"/> the control plane has in L4 mode: relayed as bytes when the connection is seen before HTTP.</summary>
    public IReadOnlyList<int> L4Ports { get; init; } = [];

    /// <summary>Where the outbound path forwards to: this endpoint's inbound mTLS listener.</summary>
    public string InboundPrefix { get; } = $"https://{Inbound}";

    /// <summary>
    /// The application port to reach: the target of the requested Service port, or the requested port if the service
    /// declares it, else (no port, or 80) its first HTTP port.
    /// </summary>
    public int? HttpPortFor(int? requested) =>
        requested is { } s && ServicePorts.TryGetValue(s, out var target) ? (HttpPorts.Contains(target) ? target : null)
        : requested is { } p && p != 80 ? (HttpPorts.Contains(p) ? p : null)
        : HttpPorts.Count > 0 ? HttpPorts[0] : null;

    /// <summary>The TCP port to relay to: the target of the requested Service port, or the requested port if declared TCP.</summary>
    public int? TcpPortFor(int requested) =>
        ServicePorts.TryGetValue(requested, out var target) ? (TcpPorts.Contains(target) ? target : null)
        : TcpPorts.Contains(requested) ? requested : null;

    /// <summary>The port to relay to as bytes: a declared TCP port (<see cref="TcpPortFor"/>), or an HTTP port in L4 mode, mapped the same way.</summary>
    public int? RelayPortFor(int requested) =>
        TcpPortFor(requested) ?? (ServicePorts.TryGetValue(requested, out var target) ? (L4Ports.Contains(target) ? target : null)
        : L4Ports.Contains(requested) ? requested : null);
}
