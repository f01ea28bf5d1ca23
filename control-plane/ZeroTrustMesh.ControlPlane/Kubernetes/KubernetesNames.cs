using System.Text.RegularExpressions;

namespace ZeroTrustMesh.ControlPlane.Kubernetes;

/// <summary>Kubernetes name rules (RFC 1123), for flags that name Kubernetes things.</summary>
internal static partial class KubernetesNames
{
    [GeneratedRegex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", RegexOptions.CultureInvariant)]
    private static partial Regex Label();

    /// <summary>A DNS-1123 label: a namespace name.</summary>
    public static bool IsLabel(string name) => Label().IsMatch(name);

    /// <summary>A DNS-1123 subdomain: most object names, and a DNS name.</summary>
    public static bool IsSubdomain(string name) => name.Length is > 0 and <= 253 && name.Split('.').All(IsLabel);
}
