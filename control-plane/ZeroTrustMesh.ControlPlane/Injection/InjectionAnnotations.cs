using System.Globalization;
using System.Net;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>The labels and annotations the injector reads and writes (the names are fixed by the Kubernetes contract).</summary>
internal static class InjectionAnnotations
{
    /// <summary>Label or annotation: <c>"true"</c> opts a pod in, <c>"false"</c> out.</summary>
    public const string Inject = "ztm.dev/inject";

    /// <summary>Namespace label value that injects every pod of the namespace (<c>ztm.dev/inject=enabled</c>).</summary>
    public const string NamespaceEnabled = "enabled";

    /// <summary>What the injector added, as JSON; present means already injected.</summary>
    public const string Status = "ztm.dev/status";

    public const string ExcludeInboundPorts = "traffic.ztm.dev/excludeInboundPorts";
    public const string ExcludeOutboundPorts = "traffic.ztm.dev/excludeOutboundPorts";
    public const string ExcludeOutboundIPRanges = "traffic.ztm.dev/excludeOutboundIPRanges";
    public const string ProxyCpu = "sidecar.ztm.dev/proxyCPU";
    public const string ProxyMemory = "sidecar.ztm.dev/proxyMemory";
    public const string ProxyCpuLimit = "sidecar.ztm.dev/proxyCPULimit";
    public const string ProxyMemoryLimit = "sidecar.ztm.dev/proxyMemoryLimit";

    public const string PrometheusScrape = "prometheus.io/scrape";
    public const string PrometheusPort = "prometheus.io/port";
    public const string PrometheusPath = "prometheus.io/path";

    /// <summary>A comma list of ports ("8080, 9090"); empty means none. Null with <paramref name="error"/> when a value is not a port.</summary>
    public static IReadOnlyList<int>? ParsePorts(string name, string value, out string? error)
    {
        var ports = new List<int>();
        foreach (var part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                error = $"annotation {name}: '{value}' is invalid: '{part}' is not a port (1..65535; a comma list like \"8080,9090\")";
                return null;
            }
            ports.Add(port);
        }
        error = null;
        return ports;
    }

    /// <summary>A comma list of CIDRs ("10.0.0.0/8,fd00::/8"); empty means none. Null with <paramref name="error"/> when one is not a CIDR.</summary>
    public static IReadOnlyList<string>? ParseCidrs(string name, string value, out string? error)
    {
        var ranges = new List<string>();
        foreach (var part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!TryParseCidr(part, out var network))
            {
                error = $"annotation {name}: '{value}' is invalid: '{part}' is not a CIDR with its host bits zero (a comma list like \"10.0.0.0/8,192.168.1.0/24\")";
                return null;
            }
            ranges.Add(network);
        }
        error = null;
        return ranges;
    }

    /// <summary>An address and prefix length whose host bits are zero ("10.0.0.0/8"), as written back ("10.0.0.0/8").</summary>
    public static bool TryParseCidr(string text, out string cidr)
    {
        cidr = "";
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0 || !IPAddress.TryParse(text.AsSpan(0, slash), out var address) || !IPNetwork.TryParse(text, out var network)
            || !network.BaseAddress.Equals(address))
        {
            return false;
        }
        cidr = network.ToString();
        return true;
    }
}
