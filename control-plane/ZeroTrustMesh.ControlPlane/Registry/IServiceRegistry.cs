using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Registry;

/// <summary>
/// One endpoint of a service: where its sidecar listens and the one identity it may present. In Kubernetes an endpoint
/// may have no sidecar (a pod that was not injected): <see cref="Identity"/> is then null and <see cref="InboundAddress"/>
/// the pod's IP; it is reported so the caller's sidecar can say why it refuses to send there.
/// </summary>
internal sealed record RegisteredEndpoint(
    string Service,
    SpiffeId? Identity,
    string InboundAddress,
    IReadOnlyList<int> HttpPorts,
    IReadOnlyList<int> TcpPorts,
    string? ServiceAddress,
    DateTimeOffset ExpiresAt)
{
    /// <summary>
    /// Kubernetes: each port of the Service (what a client dials) and the endpoint's port it reaches (the resolved
    /// <c>targetPort</c>). Empty standalone, where a client dials the application's own ports.
    /// </summary>
    public IReadOnlyDictionary<int, int> ServicePorts { get; init; } = new Dictionary<int, int>();

    /// <summary>The service a workload identity may register: <c>spiffe://td/ns/shop/sa/orders</c> → <c>orders.shop</c>.</summary>
    public static string? ServiceOf(SpiffeId identity) =>
        identity.TryGetWorkload(out var ns, out var sa) ? $"{sa}.{ns}" : null;

    /// <summary>Everything but the expiry is the same: a heartbeat, not a change.</summary>
    public bool SameAs(RegisteredEndpoint other) =>
        Service == other.Service && Identity == other.Identity && InboundAddress == other.InboundAddress && ServiceAddress == other.ServiceAddress
        && HttpPorts.SequenceEqual(other.HttpPorts) && TcpPorts.SequenceEqual(other.TcpPorts);
}

/// <summary>
/// Where each service's sidecars are: sidecars' own registrations standalone (<see cref="LocalServiceRegistry"/>),
/// Services and EndpointSlices in Kubernetes. A workload registers only the service named after its own identity
/// (<c>sa.ns</c>), so the identity a destination may have is never something a caller claims.
/// </summary>
internal interface IServiceRegistry
{
    /// <summary>How long a registration lasts without a heartbeat; sidecars are told to re-register well within it.</summary>
    TimeSpan Ttl { get; }

    /// <summary>
    /// A sidecar's heartbeat with its endpoint; what was recorded, or null when this registry does not take endpoints
    /// from sidecars (Kubernetes: the API server's EndpointSlices are the source).
    /// </summary>
    RegisteredEndpoint? Register(SpiffeId identity, string inboundAddress, IReadOnlyList<int> httpPorts, IReadOnlyList<int> tcpPorts, string? serviceAddress);

    /// <summary>Live endpoints of a service named <c>orders.shop</c>, or <c>orders</c> when only one namespace has it.</summary>
    IReadOnlyList<RegisteredEndpoint> ResolveName(string name);

    /// <summary>
    /// Live endpoints whose service address is <paramref name="address"/> ("ip:port" with the port one of theirs, or "ip");
    /// in Kubernetes also a pod's own address (podIP:port, as a headless Service's clients dial).
    /// </summary>
    IReadOnlyList<RegisteredEndpoint> ResolveAddress(string address);
}
