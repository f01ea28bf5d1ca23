using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.Tests.Identity;

/// <summary>Readiness follows the control plane's word that the certificate held now is revoked, and only that certificate.</summary>
public sealed class IdentityStateTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    [Fact]
    public void A_refusal_naming_the_current_certificate_as_revoked_makes_the_sidecar_not_ready_until_it_holds_another()
    {
        var state = new IdentityState(_time);
        var first = Identity();
        state.Set(first);
        Assert.True(state.IsReady);

        state.NoteRefusal(new RpcException(new Status(StatusCode.Unavailable, "control plane down")));
        state.NoteRefusal(new RpcException(new Status(StatusCode.PermissionDenied, "some other refusal")));
        Assert.True(state.IsReady);

        state.NoteRefusal(RevokedCaller.Refusal(RevocationList.NormalizedSerial(first.Certificate), "certificate … is revoked (… key leaked)"));
        Assert.False(state.IsReady);
        Assert.Equal("certificate … is revoked (… key leaked)", state.RevokedReason);

        state.Set(Identity()); // a new certificate (a fresh join token): the revocation was of the old one
        Assert.True(state.IsReady);
        Assert.Null(state.RevokedReason);
    }

    private WorkloadIdentity Identity()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(SubjectAltNames.ForUri("spiffe://cluster.local/ns/shop/sa/orders"));
        var certificate = request.CreateSelfSigned(_time.GetUtcNow().AddMinutes(-1), _time.GetUtcNow().AddHours(1));
        return new WorkloadIdentity(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders"), certificate, []);
    }
}
