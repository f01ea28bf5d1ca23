using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto;

namespace ZeroTrustMesh.ControlPlane.Tests.Config;

/// <summary>Sessions follow the certificate their sidecar holds: renewals update it, revocations end it.</summary>
public sealed class ConfigDistributorTests : IAsyncLifetime
{
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");

    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-distributor-").FullName;
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private ControlPlaneParts _parts = null!;

    public async Task InitializeAsync() => _parts = await ControlPlaneParts.StartAsync(_dataDir, _time);

    public async Task DisposeAsync()
    {
        await _parts.DisposeAsync();
        Directory.Delete(_dataDir, recursive: true);
    }

    [Fact]
    public async Task A_revocation_sends_the_version_that_carries_it_then_ends_the_streams_it_covers()
    {
        var distributor = _parts.Get<ConfigDistributor>();
        using var held = Issue();
        var covered = Open(distributor, held);
        using var other = Issue();
        var uncovered = Open(distributor, other);
        await Drain(covered);
        await Drain(uncovered);

        var (state, _, _) = _parts.Get<Revoker>().Revoke(RevocationList.NormalizedSerial(held), null, "key leaked", "operator");

        Assert.True(covered.Changes.TryRead(out var last));
        Assert.Equal(state.Version, last.Version);
        // As MeshConfigService reads it: the stream's handler ends with this status.
        var ended = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var _ in covered.Changes.ReadAllAsync())
            {
            }
        });
        Assert.Equal(StatusCode.PermissionDenied, ended.StatusCode);
        Assert.Contains($"is revoked (serial {RevocationList.NormalizedSerial(held)}, at ", ended.Status.Detail, StringComparison.Ordinal);
        Assert.Contains(": key leaked)", ended.Status.Detail, StringComparison.Ordinal);
        Assert.True(RevokedCaller.IsRevoked(ended, out var serial));
        Assert.Equal(RevocationList.NormalizedSerial(held), serial);
        Assert.False(uncovered.Changes.Completion.IsCompleted);
    }

    [Fact]
    public void A_renewal_moves_the_session_to_the_new_certificate()
    {
        var distributor = _parts.Get<ConfigDistributor>();
        using var held = Issue();
        var session = Open(distributor, held);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).CreateSigningRequest();
        _time.Advance(TimeSpan.FromMinutes(30));

        var renewed = _parts.Get<SvidIssuer>().Renew(csr, held, "test");

        Assert.Equal(Revocation.NormalizeSerial(renewed.Leaf.Serial), session.Serial);
        Assert.Equal(renewed.Leaf.NotAfter, session.CertificateExpiresAt);
        Assert.Equal(RevocationList.NormalizedSerial(held), session.Opened.Serial);
        Assert.Equal(renewed.Leaf.NotAfter, distributor.ExpiryOf(session.Serial));
    }

    [Fact]
    public async Task Revoking_the_certificate_a_renewed_stream_was_opened_with_ends_it_naming_that_one_not_the_current()
    {
        var distributor = _parts.Get<ConfigDistributor>();
        using var held = Issue();
        var session = Open(distributor, held);
        await Drain(session);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _parts.Get<SvidIssuer>().Renew(new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).CreateSigningRequest(), held, "test");

        _parts.Get<Revoker>().Revoke(RevocationList.NormalizedSerial(held), null, "", "operator");

        var ended = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var _ in session.Changes.ReadAllAsync())
            {
            }
        });
        Assert.True(RevokedCaller.IsRevoked(ended, out var serial));
        Assert.Equal(RevocationList.NormalizedSerial(held), serial); // the sidecar holds another: it stays ready and reconnects
    }

    private X509Certificate2 Issue()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = _parts.Get<CertificateAuthority>().IssueSvid(Orders, new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));
        return leaf.CopyWithPrivateKey(key);
    }

    private static SidecarSession Open(ConfigDistributor distributor, X509Certificate2 certificate) =>
        distributor.Open(Orders, new WorkloadRef("shop", "orders"),
            SessionCertificate.Of(certificate));

    /// <summary>Reads what the session was notified of so far (the state at open).</summary>
    private static async Task Drain(SidecarSession session) => await session.Changes.ReadAsync();
}
