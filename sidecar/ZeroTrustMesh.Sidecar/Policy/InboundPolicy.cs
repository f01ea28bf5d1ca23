using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.Authentication;
using ZeroTrustMesh.Sidecar.RateLimiting;

namespace ZeroTrustMesh.Sidecar.Policy;

/// <summary>
/// Everything one config snapshot says about inbound traffic, compiled together: JWT rules, authorization, rate
/// limits, and whether plaintext is accepted (PeerAuthentication). Swapped as one reference, so a request never mixes
/// the JWT rules of one version with the policies of another.
/// </summary>
internal sealed record InboundPolicy(PolicySnapshot Authorization, IRequestAuthenticator Authentication, RateLimits RateLimits, PeerAuthenticationPolicy PeerAuthentication)
{
    public string Version => Authorization.Version;
}

/// <summary>Holds the current <see cref="InboundPolicy"/>; read it once per request.</summary>
internal sealed class InboundPolicyState
{
    // Deny everything until the first snapshot arrives: no ALLOW policy, no access.
    private InboundPolicy _current = new(PolicySnapshot.Empty(new WorkloadRef("", "")), NoRequestAuthentication.Instance, RateLimits.None, PeerAuthenticationPolicy.Strict);

    public InboundPolicy Current => Volatile.Read(ref _current);

    public void Update(InboundPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        Volatile.Write(ref _current, policy);
    }
}
