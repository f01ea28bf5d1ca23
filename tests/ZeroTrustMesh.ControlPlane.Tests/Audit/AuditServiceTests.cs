using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Audit;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.DecisionLog;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.Audit;

/// <summary>
/// The Audit service on the real CA and the file store: a sidecar's checkpoint is kept only when the caller is its
/// workload and the signature is by a valid SVID of that workload under this CA; the operator lists them back.
/// </summary>
public sealed class AuditServiceTests() : ControlPlanePartsTest("audit")
{
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");
    private static readonly SpiffeId Frontend = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/frontend");
    private const string Chain = "0123456789abcdef0123456789abcdef";

    [Fact]
    public async Task A_checkpoint_signed_by_the_callers_own_svid_is_kept_and_listed()
    {
        var parts = await StartPartsAsync();
        using var svid = Issue(parts, Orders);
        var service = Service(parts);
        var ack = await service.Checkpoint(CheckpointMapping.ToProto(Sign(svid, Orders, 10)), Call(svid));
        Assert.Equal(1u, ack.Stored);
        ack = await service.Checkpoint(CheckpointMapping.ToProto(Sign(svid, Orders, 20)), Call(svid));
        Assert.Equal(2u, ack.Stored);

        var listed = await new AuditAdminService(parts.Get<ICheckpointStore>()).ListCheckpoints(new ListCheckpointsRequest { Workload = Orders.Value }, Call(null));
        Assert.Equal([10ul, 20ul], listed.Checkpoints.Select(c => c.Sequence));
        Assert.Null(CheckpointMapping.FromProto(listed.Checkpoints[1]).Problem(parts.Get<CertificateAuthority>().Bundle));
        // Kept in the data directory: a restarted control plane lists them too.
        Assert.Equal(2, (await new FileCheckpointStore(DataDir).ListAsync(Orders.Value, CancellationToken.None)).Count);
    }

    [Fact]
    public async Task A_sidecar_may_not_send_checkpoints_of_another_workload()
    {
        var parts = await StartPartsAsync();
        using var orders = Issue(parts, Orders);
        using var frontend = Issue(parts, Frontend);
        var e = await Assert.ThrowsAsync<RpcException>(() => Service(parts).Checkpoint(CheckpointMapping.ToProto(Sign(orders, Orders, 1)), Call(frontend)));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Contains($"'{Frontend}' may send checkpoints only of its own log", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_forged_or_foreign_signature_and_a_call_without_an_svid_are_refused()
    {
        var parts = await StartPartsAsync();
        using var svid = Issue(parts, Orders);
        var service = Service(parts);

        var edited = CheckpointMapping.ToProto(Sign(svid, Orders, 5));
        edited.Sequence = 6;
        var e = await Assert.ThrowsAsync<RpcException>(() => service.Checkpoint(edited, Call(svid)));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("the signature does not match its fields", e.Status.Detail, StringComparison.Ordinal);

        // The right SPIFFE ID, but not issued by this CA.
        using var selfMade = SelfSigned(Orders);
        e = await Assert.ThrowsAsync<RpcException>(() => service.Checkpoint(CheckpointMapping.ToProto(Sign(selfMade, Orders, 5)), Call(svid)));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("not a valid SVID of this mesh", e.Status.Detail, StringComparison.Ordinal);

        var malformed = CheckpointMapping.ToProto(Sign(svid, Orders, 5));
        malformed.Hash = "abc";
        e = await Assert.ThrowsAsync<RpcException>(() => service.Checkpoint(malformed, Call(svid)));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("hash must be 64 hex digits", e.Status.Detail, StringComparison.Ordinal);

        e = await Assert.ThrowsAsync<RpcException>(() => service.Checkpoint(CheckpointMapping.ToProto(Sign(svid, Orders, 5)), Call(null)));
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.Empty(await parts.Get<ICheckpointStore>().ListAsync(Orders.Value, CancellationToken.None));
    }

    [Fact]
    public async Task Listing_needs_a_spiffe_id()
    {
        var parts = await StartPartsAsync();
        var e = await Assert.ThrowsAsync<RpcException>(() => new AuditAdminService(parts.Get<ICheckpointStore>()).ListCheckpoints(new ListCheckpointsRequest { Workload = "orders" }, Call(null)));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("is not a SPIFFE ID", e.Status.Detail, StringComparison.Ordinal);
    }

    private static AuditService Service(ControlPlaneParts parts) =>
        new(parts.Get<ICheckpointStore>(), parts.Get<WorkloadCaller>(), parts.Get<CertificateAuthority>());

    private static TestCallContext Call(X509Certificate2? certificate) => new("/ztm.v1.Audit/Checkpoint", certificate);

    private Checkpoint Sign(X509Certificate2 svid, SpiffeId workload, long sequence) =>
        Checkpoint.Sign(workload.Value, Chain, sequence, new string('a', 64), Time.GetUtcNow(), ChainWriter.SegmentName(1), svid, []);

    private static X509Certificate2 Issue(ControlPlaneParts parts, SpiffeId id)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = parts.Get<CertificateAuthority>().IssueSvid(id, new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));
        return leaf.CopyWithPrivateKey(key);
    }

    private X509Certificate2 SelfSigned(SpiffeId id)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(id.Value));
        request.CertificateExtensions.Add(san.Build());
        return request.CreateSelfSigned(Time.GetUtcNow().AddMinutes(-5), Time.GetUtcNow().AddHours(1));
    }
}
