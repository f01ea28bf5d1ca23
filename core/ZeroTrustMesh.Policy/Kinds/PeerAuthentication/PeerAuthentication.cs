using System.Collections.Immutable;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// <c>kind: PeerAuthentication</c>: whether a workload accepts only mTLS (STRICT, the default) or also plaintext
/// (PERMISSIVE), for the whole workload or per application port (<c>portLevelMtls</c>, which needs a selector, as in Istio).
/// </summary>
public sealed record PeerAuthentication(ResourceMetadata Metadata, PeerAuthenticationSpec Spec) : PolicyResource(Metadata)
{
    public const string KindName = "PeerAuthentication";

    public override string Kind => KindName;

    public override WorkloadSelector? Selector => Spec.Selector;
}

public sealed record PeerAuthenticationSpec(WorkloadSelector? Selector, MtlsMode Mode, ImmutableArray<PortMtls> PortLevelMtls);

public enum MtlsMode
{
    Strict,
    Permissive,
}

/// <summary>The mode for one of the workload's application ports (the app's port, as in <c>--app-port</c>).</summary>
public sealed record PortMtls(int Port, MtlsMode Mode);
