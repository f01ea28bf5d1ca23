using System.IO.Compression;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using k8s;
using System.Text.Json;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.KubernetesDouble;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.ControlPlane.Tests.Ca;

/// <summary>
/// A CA rotation with two control-plane replicas against the Kubernetes API double, sidecars split across them (their
/// config streams' sessions, opened as the stream opens them): the leader's steps wait for the sidecars of the replica
/// that does not lead, through that replica's report; a replica that stopped reporting blocks only until its report is stale.
/// </summary>
public sealed class RotationAcrossReplicasTests : IAsyncLifetime
{
    private const string Namespace = KubernetesReplicaParts.Namespace;
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");
    private static readonly SpiffeId Frontend = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/frontend");
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(200);

    private readonly ReplicaCluster _cluster = new("ztm-rotation-replicas-");

    public Task InitializeAsync() => _cluster.InitializeAsync();

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Activation_waits_for_the_sidecars_of_the_replica_that_does_not_lead_and_proceeds_once_they_follow()
    {
        _cluster.Api.Seed(ClusterObjects.Pod(Namespace, "controlplane-b", "ztm-controlplane", "10.0.0.12", meshed: false));
        var pod = _cluster.Api.Get<V1Pod>("v1", "pods", Namespace, "controlplane-b")!;
        var a = await StartLeaderAsync("controlplane-a");
        var b = await StartAsync("controlplane-b");
        var orders = Open(a, Orders, follows: 1);
        var frontend = Open(b, Frontend, follows: 1);
        await ReportedAsync("controlplane-b", r => r.Sidecars.Any(s => s.SpiffeId == Frontend.Value));

        var before = CaAdminService.StatusOf(a.Get<CaRotation>());
        Assert.Equal((2u, 2u), (before.SidecarsCounted, before.SidecarsFollowing));
        Assert.Equal(["controlplane-a", "controlplane-b"], before.Replicas.Select(r => r.Name));
        Assert.Equal([(Frontend.Value, "controlplane-b"), (Orders.Value, "controlplane-a")], before.Sidecars.Select(s => (s.SpiffeId, s.Replica)));

        var prepared = a.Get<CaRotation>().Start("operator");
        orders.Follows(2);

        // B follows the step (it serves bundle 2 now), but frontend has not applied it: the leader waits for it alone.
        await a.Logs.WaitForAsync(l => l.StartsWith("ca rotation prepared waits: ", StringComparison.Ordinal)
            && l.EndsWith($"(with the new root) before it signs: {Frontend} (connected to replica controlplane-b, follows bundle 1)", StringComparison.Ordinal), 1, Timeout);
        Assert.Equal(RotationPhase.Prepared, a.Get<CaRotation>().State.Phase);
        Assert.Equal(0, a.Logs.Lines.Count(l => l.StartsWith("ca rotation activate ", StringComparison.Ordinal)));
        var waiting = CaAdminService.StatusOf(a.Get<CaRotation>());
        Assert.Equal((2u, 1u), (waiting.SidecarsCounted, waiting.SidecarsFollowing));
        Assert.Equal($"{Frontend} (connected to replica controlplane-b, follows bundle 1)", Assert.Single(waiting.BlockedBy));
        // Any replica answers ca status with the same union: B reads A's report as A reads B's.
        await ReportedAsync("controlplane-a", r => r.BundleSequence == 2 && r.Sidecars.Single().BundleSequence == 2);
        var fromB = CaAdminService.StatusOf(b.Get<CaRotation>());
        Assert.Equal((2u, 1u, "prepared"), (fromB.SidecarsCounted, fromB.SidecarsFollowing, fromB.Phase));

        frontend.Follows(2);

        await a.Logs.WaitForAsync(l => l.StartsWith("ca rotation activate ", StringComparison.Ordinal), 1, Timeout);
        await b.Logs.WaitForAsync(l => l.StartsWith("ca rotation followed phase=active ", StringComparison.Ordinal), 1, Timeout);
        Assert.Equal(prepared.Next!.Thumbprint, b.Get<CertificateAuthority>().SigningCertificate.Thumbprint);
        Assert.Equal((2u, 2u), (CaAdminService.StatusOf(a.Get<CaRotation>()).SidecarsCounted, CaAdminService.StatusOf(a.Get<CaRotation>()).SidecarsFollowing));

        // Each report is its replica's ConfigMap; B's is owned by B's pod (deleted with it), A is no pod here.
        var reportB = _cluster.Api.Get<V1ConfigMap>("v1", "configmaps", Namespace, "ztm-sidecars-controlplane-b")!;
        var owner = Assert.Single(reportB.Metadata.OwnerReferences);
        Assert.Equal(("v1", "Pod", "controlplane-b", pod.Metadata.Uid), (owner.ApiVersion, owner.Kind, owner.Name, owner.Uid));
        Assert.Equal("sidecars", reportB.Metadata.Labels[ConfigMapBundleFollowers.ReportLabel]);
        Assert.Equal(("controlplane-b", "2", "1"), (reportB.Data["replica"], reportB.Data["bundleSequence"], reportB.Data["sidecars"]));
        Assert.Null(_cluster.Api.Get<V1ConfigMap>("v1", "configmaps", Namespace, "ztm-sidecars-controlplane-a")!.Metadata.OwnerReferences);
    }

    [Fact]
    public async Task A_stopped_replicas_report_blocks_only_until_it_is_stale_and_its_sidecar_counts_where_it_reconnects()
    {
        var reportTimeout = TimeSpan.FromSeconds(2);
        var a = await StartLeaderAsync("controlplane-a", reportTimeout);
        var b = await StartAsync("controlplane-b", reportTimeout);
        Open(b, Frontend, follows: 1);
        await ReportedAsync("controlplane-b", r => r.Sidecars.Any(s => s.SpiffeId == Frontend.Value));
        await b.DisposeAsync(); // B stops; its report stays (its pod's deletion would take it, a killed process leaves it)
        var frontend = Open(a, Frontend, follows: 1); // and frontend reconnects to A

        var started = DateTimeOffset.UtcNow;
        a.Get<CaRotation>().Start("operator");

        await a.Logs.WaitForAsync(l => l.StartsWith("ca rotation prepared waits: ", StringComparison.Ordinal)
            && l.Contains("replica controlplane-b (serves bundle 1)", StringComparison.Ordinal)
            && l.Contains($"{Frontend} (connected to replica controlplane-b, follows bundle 1)", StringComparison.Ordinal), 1, Timeout);
        // Once B's report has not changed for the timeout, it is ignored: only frontend's stream on A holds activation.
        await a.Logs.WaitForAsync(l => l.StartsWith("replica controlplane-b stopped reporting its sidecars (ConfigMap ztm-system/ztm-sidecars-controlplane-b unchanged for ", StringComparison.Ordinal), 1, Timeout);
        Assert.True(DateTimeOffset.UtcNow - started >= reportTimeout);
        await a.Logs.WaitForAsync(l => l.EndsWith($"before it signs: {Frontend} (connected, follows bundle 1)", StringComparison.Ordinal), 1, Timeout);
        Assert.Equal(RotationPhase.Prepared, a.Get<CaRotation>().State.Phase);
        var status = CaAdminService.StatusOf(a.Get<CaRotation>());
        Assert.Equal((1u, 0u), (status.SidecarsCounted, status.SidecarsFollowing));
        Assert.Equal([("controlplane-a", false), ("controlplane-b", true)], status.Replicas.Select(r => (r.Name, r.Stale)));

        frontend.Follows(2);

        await a.Logs.WaitForAsync(l => l.StartsWith("ca rotation activate ", StringComparison.Ordinal), 1, Timeout);
    }

    [Fact]
    public async Task A_report_that_does_not_parse_and_an_API_that_fails_hold_the_step_and_say_why()
    {
        var a = await StartLeaderAsync("controlplane-a");
        _cluster.Api.Seed(new V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            Metadata = new V1ObjectMeta
            {
                Name = "ztm-sidecars-controlplane-x",
                NamespaceProperty = Namespace,
                Labels = new Dictionary<string, string> { [ConfigMapBundleFollowers.ReportLabel] = ConfigMapBundleFollowers.ReportLabelValue },
            },
            Data = new Dictionary<string, string> { ["replica"] = "controlplane-x" },
            BinaryData = new Dictionary<string, byte[]> { [ConfigMapBundleFollowers.SidecarsKey] = "not gzip"u8.ToArray() },
        });
        a.Get<CaRotation>().Start("operator");

        var gate = a.Get<CaRotation>().Gate();
        Assert.StartsWith("replica controlplane-x (its report in ConfigMap ztm-system/ztm-sidecars-controlplane-x does not parse: ", Assert.Single(gate.Blockers), StringComparison.Ordinal);
        Assert.Equal(RotationPhase.Prepared, a.Get<CaRotation>().State.Phase);

        // The API fails before the report goes: between the two, the leader's next round would find nothing to wait for.
        _cluster.Api.Fail(r => r.Method == "GET" && r.Query["labelSelector"].ToString() == "ztm.dev/report=sidecars", 1000, 500);
        await _cluster.Api.CreateClient().CoreV1.DeleteNamespacedConfigMapAsync("ztm-sidecars-controlplane-x", Namespace);
        gate = a.Get<CaRotation>().Gate();
        Assert.Equal("the other replicas' reports (ConfigMaps ztm-system/ztm-sidecars-* (label ztm.dev/report=sidecars)) cannot be read: the API answered 500 InternalServerError", Assert.Single(gate.Blockers));

        _cluster.Api.Heal();
        await a.Logs.WaitForAsync(l => l.StartsWith("ca rotation activate ", StringComparison.Ordinal), 1, Timeout);
    }

    [Fact]
    public async Task A_report_the_API_will_not_let_be_owned_by_its_pod_is_written_without_the_owner()
    {
        // OwnerReferencesPermissionEnforcement: an owner reference needs delete rights, which the chart's role does not grant.
        _cluster.Api.Seed(ClusterObjects.Pod(Namespace, "controlplane-b", "ztm-controlplane", "10.0.0.12", meshed: false));
        _cluster.Api.Fail(r => r.Method == "PUT" && r.Path.Value!.EndsWith("/configmaps/ztm-sidecars-controlplane-b", StringComparison.Ordinal), 1, 403, "Forbidden");

        var b = await StartAsync("controlplane-b");

        await b.Logs.WaitForAsync(l => l.StartsWith("sidecar report ConfigMap ztm-system/ztm-sidecars-controlplane-b is not owned by pod controlplane-b (so not deleted with it; ignored once stale): the API answered 403 Forbidden", StringComparison.Ordinal), 1, Timeout);
        await _cluster.Api.WaitForAsync(api => api.Get<V1ConfigMap>("v1", "configmaps", Namespace, "ztm-sidecars-controlplane-b") is not null, Timeout);
        Assert.Null(_cluster.Api.Get<V1ConfigMap>("v1", "configmaps", Namespace, "ztm-sidecars-controlplane-b")!.Metadata.OwnerReferences);
        Assert.DoesNotContain(b.Logs.Lines, l => l.StartsWith("sidecar report not written", StringComparison.Ordinal));
    }

    [Fact]
    public void A_sidecar_seen_by_two_replicas_counts_once_with_its_newest_report_and_each_stream_of_a_shared_identity_counts()
    {
        var t = new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);
        SidecarReport Sidecar(string id, string replica, bool connected, ulong bundle, int secondsAgo, string serial) =>
            new(id, connected, bundle, t.AddSeconds(-secondsAgo), serial, t.AddHours(1), "", replica);
        ReplicaReport Replica(string name, params SidecarReport[] sidecars) => new(name, 2, t, sidecars);

        var merged = BundleFollowers.Merge(
        [
            Replica("a",
                Sidecar("spiffe://td/ns/shop/sa/moved", "a", connected: false, 1, 60, "01"),    // moved to b
                Sidecar("spiffe://td/ns/shop/sa/down", "a", connected: false, 1, 60, "02"),     // down, seen on both: the newest
                Sidecar("spiffe://td/ns/shop/sa/web", "a", connected: true, 2, 1, "03"),        // two pods of one service account
                Sidecar("spiffe://td/ns/shop/sa/twice", "a", connected: true, 1, 30, "05")),    // one stream, in both reports
            Replica("b",
                Sidecar("spiffe://td/ns/shop/sa/moved", "b", connected: true, 2, 1, "11"),
                Sidecar("spiffe://td/ns/shop/sa/down", "b", connected: false, 2, 10, "12"),
                Sidecar("spiffe://td/ns/shop/sa/web", "b", connected: true, 1, 1, "04"),
                Sidecar("spiffe://td/ns/shop/sa/twice", "b", connected: true, 2, 1, "05")),
            new ReplicaReport("c", 0, t, [Sidecar("spiffe://td/ns/shop/sa/unreadable", "c", true, 1, 1, "21")], "does not parse"),
        ]);

        Assert.Equal(
        [
            ("spiffe://td/ns/shop/sa/down", "b", 2ul),
            ("spiffe://td/ns/shop/sa/moved", "b", 2ul),
            ("spiffe://td/ns/shop/sa/twice", "b", 2ul),
            ("spiffe://td/ns/shop/sa/web", "a", 2ul),
            ("spiffe://td/ns/shop/sa/web", "b", 1ul),
        ], merged.Select(s => (s.SpiffeId, s.Replica, s.BundleSequence)));
    }

    [Fact]
    public void A_replica_name_that_is_no_object_name_gets_a_digest()
    {
        Assert.Equal("ztm-sidecars-controlplane-7d9f-x2", ConfigMapBundleFollowers.NameOf("controlplane-7d9f-x2"));
        var digest = ConfigMapBundleFollowers.NameOf("Build-Host_4711");
        Assert.Matches("^ztm-sidecars-[0-9a-f]{16}$", digest);
        Assert.Equal(digest, ConfigMapBundleFollowers.NameOf("Build-Host_4711"));
    }

    private async Task<KubernetesReplicaParts> StartLeaderAsync(string name, TimeSpan? reportTimeout = null)
    {
        var replica = await StartAsync(name, reportTimeout);
        await replica.Logs.WaitForAsync(l => l.StartsWith($"leading: {name} ", StringComparison.Ordinal), 1, Timeout);
        return replica;
    }

    private async Task<KubernetesReplicaParts> StartAsync(string name, TimeSpan? reportTimeout = null)
    {
        var replica = await KubernetesReplicaParts.StartAsync(_cluster.Api, Path.Combine(_cluster.Dir, name), name, Poll, reportTimeout);
        _cluster.Track(replica);
        return replica;
    }

    /// <summary>Waits until the report in <paramref name="replica"/>'s ConfigMap holds <paramref name="holds"/>.</summary>
    private Task ReportedAsync(string replica, Func<ReplicaReport, bool> holds) => _cluster.Api.WaitForAsync(api =>
        api.Get<V1ConfigMap>("v1", "configmaps", Namespace, ConfigMapBundleFollowers.NameOf(replica)) is { } map && holds(Decode(map)), Timeout);

    private static ReplicaReport Decode(V1ConfigMap map)
    {
        using var unzipped = new GZipStream(new MemoryStream(map.BinaryData[ConfigMapBundleFollowers.SidecarsKey]), CompressionMode.Decompress);
        return JsonSerializer.Deserialize(unzipped, BundleFollowersJson.Default.ReplicaReport)!;
    }

    /// <summary>A sidecar's config stream on <paramref name="replica"/>, as the stream opens it, following bundle <paramref name="follows"/>.</summary>
    private static SidecarSession Open(KubernetesReplicaParts replica, SpiffeId id, ulong follows)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = replica.Get<CertificateAuthority>().IssueSvid(id, new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));
        id.TryGetWorkload(out var ns, out var sa);
        var session = replica.Get<ConfigDistributor>().Open(id, new WorkloadRef(ns!, sa!), SessionCertificate.Of(leaf));
        session.LastSeen = DateTimeOffset.UtcNow;
        session.Follows(follows);
        return session;
    }
}
