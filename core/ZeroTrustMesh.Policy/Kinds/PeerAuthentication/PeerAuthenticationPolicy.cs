using System.Collections.Frozen;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// The PeerAuthentication of one workload, compiled: whether its inbound listener accepts plaintext, on which ports.
/// Which resource applies follows Istio: one whose selector names the workload wins over a namespace-wide one (no
/// selector); among several at the same level the first by name wins, so the outcome is deterministic. No resource
/// means STRICT. A port in <c>portLevelMtls</c> takes that port's mode; the other ports take the resource's mode.
/// </summary>
public sealed class PeerAuthenticationPolicy
{
    /// <summary>No PeerAuthentication: mTLS only.</summary>
    public static readonly PeerAuthenticationPolicy Strict = new(MtlsMode.Strict, FrozenDictionary<int, MtlsMode>.Empty, null);

    private readonly FrozenDictionary<int, MtlsMode> _ports;

    private PeerAuthenticationPolicy(MtlsMode mode, FrozenDictionary<int, MtlsMode> ports, string? source)
    {
        Mode = mode;
        _ports = ports;
        Source = source;
        AcceptsPlaintext = mode == MtlsMode.Permissive || ports.Values.Any(m => m == MtlsMode.Permissive);
    }

    /// <summary>The workload's mode (ports without their own take it).</summary>
    public MtlsMode Mode { get; }

    /// <summary><c>namespace/name</c> of the resource that applies; null when none does (STRICT by default).</summary>
    public string? Source { get; }

    /// <summary>Whether a plaintext connection may be accepted at all: the workload, or at least one port, is PERMISSIVE.</summary>
    public bool AcceptsPlaintext { get; }

    /// <summary>The mode for requests to application port <paramref name="port"/>.</summary>
    public MtlsMode ModeFor(int port) => _ports.TryGetValue(port, out var mode) ? mode : Mode;

    /// <summary>Compiles the resources that select <paramref name="workload"/>; the others are ignored.</summary>
    public static PeerAuthenticationPolicy Compile(WorkloadRef workload, IEnumerable<PeerAuthentication> resources)
    {
        var chosen = resources
            .Where(r => r.AppliesTo(workload))
            .OrderBy(r => r.Spec.Selector is null ? 1 : 0) // the workload's own resource first
            .ThenBy(r => r.Metadata.Name, StringComparer.Ordinal)
            .FirstOrDefault();
        if (chosen is null)
        {
            return Strict;
        }
        var ports = chosen.Spec.PortLevelMtls.IsDefault ? [] : chosen.Spec.PortLevelMtls;
        return new PeerAuthenticationPolicy(
            chosen.Spec.Mode,
            ports.DistinctBy(p => p.Port).ToFrozenDictionary(p => p.Port, p => p.Mode),
            $"{chosen.Metadata.Namespace}/{chosen.Metadata.Name}");
    }

    public override string ToString() =>
        (Mode == MtlsMode.Permissive ? "PERMISSIVE" : "STRICT")
        + string.Concat(_ports.OrderBy(p => p.Key).Select(p => $", port {p.Key} {(p.Value == MtlsMode.Permissive ? "PERMISSIVE" : "STRICT")}"));
}
