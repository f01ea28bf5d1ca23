using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Audit;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.DecisionLog;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.KubernetesDouble;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.Audit;

/// <summary>
/// Decision-log checkpoints in Kubernetes mode, against the API double: two replicas composed as
/// <c>ztm-controlplane --kubernetes</c> composes them, each receiving some of a workload's checkpoints; either lists them
/// all, a replica started later too; the history is bounded with the oldest dropped and counted; replicas writing at
/// once lose nothing; an API that fails is UNAVAILABLE with the reason.
/// </summary>
public sealed class CheckpointsInTheClusterTests : IAsyncLifetime
{
    private const string Namespace = KubernetesReplicaParts.Namespace;
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");
    private const string Chain = "0123456789abcdef0123456789abcdef";

    private readonly ReplicaCluster _cluster = new("ztm-checkpoints-cluster-");

    public Task InitializeAsync() => _cluster.InitializeAsync();

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Checkpoints_received_by_either_replica_are_listed_by_both_and_by_a_replica_started_later()
    {
        var a = await StartAsync("controlplane-a");
        var b = await StartAsync("controlplane-b");
        using var svid = Issue(a, Orders);
        await Service(a).Checkpoint(CheckpointMapping.ToProto(Sign(svid, 10)), Call(svid));
        var ack = await Service(b).Checkpoint(CheckpointMapping.ToProto(Sign(svid, 20)), Call(svid));
        Assert.Equal(2u, ack.Stored);
        await Service(a).Checkpoint(CheckpointMapping.ToProto(Sign(svid, 30)), Call(svid));

        foreach (var replica in new[] { a, b })
        {
            Assert.Equal([10ul, 20ul, 30ul], (await List(replica)).Select(c => c.Sequence));
        }
        var map = _cluster.Api.Get<V1ConfigMap>("v1", "configmaps", Namespace, ConfigMapCheckpointStore.NameOf(Orders.Value))!;
        Assert.Equal((Orders.Value, "3", "0"), (map.Data["workload"], map.Data["checkpoints"], map.Data["dropped"]));
        Assert.Equal(ConfigMapCheckpointStore.LabelValue, map.Metadata.Labels[ConfigMapCheckpointStore.Label]);

        await a.DisposeAsync();
        await b.DisposeAsync();
        var c = await StartAsync("controlplane-c");
        var listed = await List(c);
        Assert.Equal([10ul, 20ul, 30ul], listed.Select(x => x.Sequence));
        Assert.Null(CheckpointMapping.FromProto(listed[2]).Problem(c.Get<CertificateAuthority>().Bundle));
    }

    [Fact]
    public async Task The_history_is_bounded_the_oldest_dropped_and_counted()
    {
        var a = await StartAsync("controlplane-a");
        using var svid = Issue(a, Orders);
        var store = new ConfigMapCheckpointStore(_cluster.Api.CreateClient(), Namespace, maxCheckpoints: 3);
        for (var sequence = 1; sequence <= 5; sequence++)
        {
            await store.AddAsync(Sign(svid, sequence), CancellationToken.None);
        }
        Assert.Equal([3L, 4L, 5L], (await store.ListAsync(Orders.Value, CancellationToken.None)).Select(c => c.Sequence));
        var map = _cluster.Api.Get<V1ConfigMap>("v1", "configmaps", Namespace, ConfigMapCheckpointStore.NameOf(Orders.Value))!;
        Assert.Equal(("3", "2"), (map.Data["checkpoints"], map.Data["dropped"]));
    }

    [Fact]
    public async Task Replicas_writing_one_workloads_checkpoints_at_once_lose_none()
    {
        var a = await StartAsync("controlplane-a");
        using var svid = Issue(a, Orders);
        var first = new ConfigMapCheckpointStore(_cluster.Api.CreateClient(), Namespace);
        var second = new ConfigMapCheckpointStore(_cluster.Api.CreateClient(), Namespace);
        await Task.WhenAll(
            Task.Run(async () => { for (var s = 1; s <= 10; s++) { await first.AddAsync(Sign(svid, s), CancellationToken.None); } }),
            Task.Run(async () => { for (var s = 101; s <= 110; s++) { await second.AddAsync(Sign(svid, s), CancellationToken.None); } }));
        Assert.Equal(Enumerable.Range(1, 10).Concat(Enumerable.Range(101, 10)), (await first.ListAsync(Orders.Value, CancellationToken.None)).Select(c => (int)c.Sequence).Order());
    }

    [Fact]
    public async Task An_API_that_fails_is_UNAVAILABLE_with_the_reason_and_the_sidecar_sends_again()
    {
        var a = await StartAsync("controlplane-a");
        using var svid = Issue(a, Orders);
        _cluster.Api.Fail(r => r.Path.Value!.Contains("ztm-checkpoints-", StringComparison.Ordinal), 1, 500);

        var e = await Assert.ThrowsAsync<RpcException>(() => Service(a).Checkpoint(CheckpointMapping.ToProto(Sign(svid, 1)), Call(svid)));

        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.StartsWith($"checkpoint not stored: cannot read ConfigMap {Namespace}/ztm-checkpoints-", e.Status.Detail, StringComparison.Ordinal);
        Assert.EndsWith(": the API answered 500 InternalServerError", e.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(1u, (await Service(a).Checkpoint(CheckpointMapping.ToProto(Sign(svid, 1)), Call(svid))).Stored);
    }

    private async Task<KubernetesReplicaParts> StartAsync(string name)
    {
        var replica = await KubernetesReplicaParts.StartAsync(_cluster.Api, Path.Combine(_cluster.Dir, name), name);
        _cluster.Track(replica);
        return replica;
    }

    private static AuditService Service(KubernetesReplicaParts replica) =>
        new(replica.Get<ICheckpointStore>(), replica.Get<WorkloadCaller>(), replica.Get<CertificateAuthority>());

    private static async Task<IReadOnlyList<DecisionLogCheckpoint>> List(KubernetesReplicaParts replica) =>
        (await new AuditAdminService(replica.Get<ICheckpointStore>()).ListCheckpoints(new ListCheckpointsRequest { Workload = Orders.Value }, Call(null))).Checkpoints;

    private static TestCallContext Call(X509Certificate2? certificate) => new("/ztm.v1.Audit/Checkpoint", certificate);

    private static Checkpoint Sign(X509Certificate2 svid, long sequence) =>
        Checkpoint.Sign(Orders.Value, Chain, sequence, new string('a', 64), DateTimeOffset.UtcNow, ChainWriter.SegmentName(1), svid, []);

    private static X509Certificate2 Issue(KubernetesReplicaParts replica, SpiffeId id)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = replica.Get<CertificateAuthority>().IssueSvid(id, new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));
        return leaf.CopyWithPrivateKey(key);
    }
}
