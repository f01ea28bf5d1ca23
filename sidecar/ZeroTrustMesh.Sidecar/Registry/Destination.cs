using System.Net;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar.Registry;

/// <summary>One endpoint of a destination service: its sidecar's inbound address and the only identity it may present.</summary>
internal sealed record Destination(string Service, SpiffeId Identity, IPEndPoint Inbound, IReadOnlyList<int> HttpPorts, IReadOnlyList<int> TcpPorts)
{
    /// <summary>Where the outbound path forwards to: this endpoint's inbound mTLS listener.</summary>
    public string InboundPrefix { get; } = $"https://{Inbound}";

    /// <summary>The application port to reach: the requested one if the service declares it, else its first HTTP port.</summary>
    public int? HttpPortFor(int? requested) =>
        requested is { } p && p != 80 ? (HttpPorts.Contains(p) ? p : null) : HttpPorts.Count > 0 ? HttpPorts[0] : null;
}
