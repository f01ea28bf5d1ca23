using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Tests.Attestation;

/// <summary>Signing requests go to the attestor of their proof's kind; a kind nobody takes is refused saying so.</summary>
public sealed class AttestorsTests
{
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");

    [Fact]
    public async Task Each_proof_goes_to_the_attestor_of_its_kind()
    {
        var attestors = new Attestors([new Fixed(JoinTokenProof.KindName, Orders), new Fixed(ServiceAccountTokenProof.KindName, SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/k8s"))]);

        Assert.Equal(Orders, await attestors.AttestAsync(new JoinTokenProof("t"), _ => { }, CancellationToken.None));
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/k8s", (await attestors.AttestAsync(new ServiceAccountTokenProof("t"), _ => { }, CancellationToken.None)).Value);
    }

    [Fact]
    public async Task A_missing_proof_or_one_no_attestor_takes_is_unauthenticated_naming_what_is_taken()
    {
        var attestors = new Attestors([new Fixed(JoinTokenProof.KindName, Orders)]);

        var none = await Assert.ThrowsAsync<IssuanceRefusedException>(async () => await attestors.AttestAsync(null, _ => { }, CancellationToken.None));
        Assert.Equal((RefusalKind.Unauthenticated, "no proof of identity: pass a join token"), (none.Kind, none.Message));
        var other = await Assert.ThrowsAsync<IssuanceRefusedException>(async () => await attestors.AttestAsync(new ServiceAccountTokenProof("eyJ..."), _ => { }, CancellationToken.None));
        Assert.Equal((RefusalKind.Unauthenticated, "this control plane does not accept a service account token as proof of identity; pass a join token"), (other.Kind, other.Message));
    }

    [Fact]
    public void A_proof_never_prints_its_secret()
    {
        Assert.Equal("join_token proof", new JoinTokenProof("ztmjt_secret").ToString());
        Assert.DoesNotContain("secret", $"{new ServiceAccountTokenProof("secret")}", StringComparison.Ordinal);
    }

    private sealed class Fixed(string kind, SpiffeId id) : IAttestor
    {
        public string Kind => kind;

        public ValueTask<SpiffeId> AttestAsync(IdentityProof proof, Action<SpiffeId> accept, CancellationToken cancellation)
        {
            accept(id);
            return ValueTask.FromResult(id);
        }
    }
}
