using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Tests.Injection;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Tests.Ca;

/// <summary>Which root of the current bundle a sidecar's certificate chains to (what <c>ztmctl check</c> and <c>status</c> show).</summary>
public sealed class CertificateRootsTests
{
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");

    [Fact]
    public void A_certificate_of_this_ca_names_its_root_and_one_of_another_ca_names_none()
    {
        var ca = MeshCa.Create();
        var other = MeshCa.Create();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var publicKey = new PublicKey(key);
        using var ours = ca.IssueSvid(Orders, publicKey, TimeSpan.FromHours(1));
        using var theirs = other.IssueSvid(Orders, publicKey, TimeSpan.FromHours(1));

        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(ca.Bundle.Roots[0].RawData)), CertificateRoots.RootOf(KeyIds.Authority(ours), ca));
        Assert.Null(CertificateRoots.RootOf(KeyIds.Authority(theirs), ca));
        Assert.Null(CertificateRoots.RootOf(null, ca));
    }
}
