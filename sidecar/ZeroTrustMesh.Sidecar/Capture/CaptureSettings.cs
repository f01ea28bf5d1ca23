using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace ZeroTrustMesh.Sidecar.Capture;

/// <summary>
/// What <c>ztm-sidecar capture</c> redirects and what it leaves alone; parsed from its flags by <see cref="TryCreate"/>,
/// which refuses any value iptables would have to guess about.
/// </summary>
internal sealed record CaptureSettings
{
    /// <summary>The sidecar's pod-IP health port (<c>--health-port</c>): kubelet probes it, so it is never captured.</summary>
    public const int HealthPort = 15021;

    public required int InboundPort { get; init; }

    public required int OutboundPort { get; init; }

    /// <summary>The sidecar's UID: its own connections (to the app and to other sidecars) go out uncaptured.</summary>
    public required int ProxyUid { get; init; }

    public IReadOnlyList<int> ExcludeInboundPorts { get; init; } = [];

    public IReadOnlyList<int> ExcludeOutboundPorts { get; init; } = [];

    public IReadOnlyList<IPNetwork> ExcludeOutboundCidrs { get; init; } = [];

    /// <summary>
    /// The settings, or null and the one line that says what is wrong with the first bad value. Lists are comma-separated;
    /// an empty list is allowed (an injector passes the annotation's value as it is), duplicates are dropped.
    /// </summary>
    public static CaptureSettings? TryCreate(int inboundPort, int outboundPort, int proxyUid, string? excludeInboundPorts,
        string? excludeOutboundPorts, string? excludeOutboundCidrs, out string? error)
    {
        error = PortError("--inbound-port", inboundPort) ?? PortError("--outbound-port", outboundPort);
        if (error is null && inboundPort == outboundPort)
        {
            error = $"--inbound-port and --outbound-port are both {inboundPort}; they must differ";
        }
        if (error is null && proxyUid < 0)
        {
            error = $"--proxy-uid '{proxyUid}' must be a UID, 0 or more";
        }
        if (error is not null)
        {
            return null;
        }
        if (!TryParsePorts("--exclude-inbound-ports", excludeInboundPorts, out var inbound, out error)
            || !TryParsePorts("--exclude-outbound-ports", excludeOutboundPorts, out var outbound, out error)
            || !TryParseCidrs(excludeOutboundCidrs, out var cidrs, out error))
        {
            return null;
        }
        return new CaptureSettings
        {
            InboundPort = inboundPort,
            OutboundPort = outboundPort,
            ProxyUid = proxyUid,
            ExcludeInboundPorts = inbound,
            ExcludeOutboundPorts = outbound,
            ExcludeOutboundCidrs = cidrs,
        };
    }

    private static string? PortError(string flag, int port) =>
        port is < 1 or > 65535 ? $"{flag} '{port}' must be a port between 1 and 65535" : null;

    private static bool TryParsePorts(string flag, string? text, out IReadOnlyList<int> ports, out string? error)
    {
        var list = new List<int>();
        ports = list;
        error = null;
        foreach (var item in Items(text))
        {
            if (!int.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                error = $"{flag}: '{item}' is not a port between 1 and 65535 (a comma-separated list like 8080,9090)";
                return false;
            }
            if (!list.Contains(port))
            {
                list.Add(port);
            }
        }
        return true;
    }

    private static bool TryParseCidrs(string? text, out IReadOnlyList<IPNetwork> cidrs, out string? error)
    {
        var list = new List<IPNetwork>();
        cidrs = list;
        error = null;
        foreach (var item in Items(text))
        {
            // A bare address is that one host; address bits past the prefix are ignored, as iptables does.
            var withPrefix = item.Contains('/', StringComparison.Ordinal) ? item : item + "/32";
            if (!IPNetwork.TryParse(withPrefix, out var network))
            {
                error = $"--exclude-outbound-cidrs: '{item}' is not an IPv4 CIDR like 10.0.0.0/8";
                return false;
            }
            if (network.BaseAddress.AddressFamily != AddressFamily.InterNetwork)
            {
                error = $"--exclude-outbound-cidrs: '{item}' is IPv6; capture sets IPv4 rules only";
                return false;
            }
            if (!list.Contains(network))
            {
                list.Add(network);
            }
        }
        return true;
    }

    private static string[] Items(string? text) =>
        (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
