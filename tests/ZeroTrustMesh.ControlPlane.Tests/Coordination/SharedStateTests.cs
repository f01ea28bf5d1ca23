using System.Text.Json;
using k8s.Models;
using Microsoft.Extensions.Logging.Abstractions;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Coordination;

/// <summary>
/// What control-plane replicas share through the Kubernetes API double: revocations (a ConfigMap, optimistic
/// concurrency), config versions (the same content is the same version on every replica), and leader-only pruning.
/// </summary>
public sealed class SharedStateTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly ReplicaCluster _cluster = new("ztm-replicas-");

    public Task InitializeAsync() => _cluster.InitializeAsync();

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task A_revocation_made_on_one_replica_is_in_force_on_the_other_at_the_same_config_version()
    {
        var a = await StartAsync("controlplane-a");
        var b = await StartAsync("controlplane-b");
        Assert.Equal(a.Get<ConfigStore>().Current.Version, b.Get<ConfigStore>().Current.Version);
        var onB = new TaskCompletionSource<ConfigState>(TaskCreationOptions.RunContinuationsAsynchronously);
        b.Get<ConfigStore>().Changed += s => onB.TrySetResult(s);

        var (state, entries, changed) = a.Get<Revoker>().Revoke(null, "spiffe://cluster.local/ns/shop/sa/orders", "key leaked", "spiffe://cluster.local/ztm/operator");

        Assert.True(changed);
        var seen = await onB.Task.WaitAsync(Timeout);
        Assert.Equal(state.Version, seen.Version);
        Assert.Equal(entries[0].Subject, Assert.Single(b.Get<IRevocationStore>().Current.Entries).Subject);
        // B's audit log says what A did, not that something changed somewhere.
        var audited = File.ReadLines(Path.Combine(_cluster.Dir, "controlplane-b", "policy-audit.log")).Last();
        Assert.Contains($"\"version\":\"{seen.Version}\"", audited, StringComparison.Ordinal);
        Assert.Contains("\"action\":\"revoke\"", audited, StringComparison.Ordinal);
        Assert.Contains("\"actor\":\"spiffe://cluster.local/ztm/operator\"", audited, StringComparison.Ordinal);
        Assert.Contains(b.Logs.Lines, l => l.StartsWith("revocations changed by another replica: revoke by spiffe://cluster.local/ztm/operator (1 in force", StringComparison.Ordinal));

        // A replica that starts now composes the same content, and so the same version.
        var c = await StartAsync("controlplane-c");
        Assert.Equal(state.Version, c.Get<ConfigStore>().Current.Version);
        Assert.Single(c.Get<IRevocationStore>().Current.Entries);
    }

    [Fact]
    public async Task Two_replicas_revoking_from_the_same_stale_list_keep_both_revocations()
    {
        // Not following the ConfigMap (no watch): each still holds the empty list it read when it was built.
        var a = Store();
        var b = Store();
        var now = DateTimeOffset.UtcNow;

        Assert.True(a.Revise(l => (l.With(Revocation.ForSerial("1a", now, now.AddHours(1), "")), ["serial 1a"]), "revoke", "operator-a", null));
        Assert.True(b.Revise(l => (l.With(Revocation.ForSerial("1b", now, now.AddHours(1), "")), ["serial 1b"]), "revoke", "operator-b", null));

        Assert.Equal(["1a", "1b"], b.Current.Entries.Select(e => e.Serial).Order(StringComparer.Ordinal));
        // B created it too, from its empty read: 409 AlreadyExists, read again, and its revocation added to A's.
        Assert.Contains(_cluster.Api.Requests, r => r.Method == "POST" && r.Path.EndsWith("/configmaps", StringComparison.Ordinal) && r.Status == 409);

        // And with both stale again (each knows only its own write): A's write over an old resourceVersion is a 409 Conflict.
        Assert.True(a.Revise(l => (l.With(Revocation.ForSerial("1d", now, now.AddHours(1), "")), ["serial 1d"]), "revoke", "operator-a", null));
        Assert.Equal(["1a", "1b", "1d"], a.Current.Entries.Select(e => e.Serial).Order(StringComparer.Ordinal));
        Assert.Contains(_cluster.Api.Requests, r => r.Method == "PUT" && r.Path.EndsWith("/configmaps/ztm-revocations", StringComparison.Ordinal) && r.Status == 409);
        var map = _cluster.Api.Get<V1ConfigMap>("v1", "configmaps", KubernetesReplicaParts.Namespace, ConfigMapRevocationStore.Name)!;
        Assert.Equal(3, FileRevocationStore.Parse(map.Data[ConfigMapRevocationStore.DataKey]).Count);
        Assert.Equal("operator-a", JsonDocument.Parse(map.Metadata.Annotations[ConfigMapRevocationStore.LastChangeAnnotation]).RootElement.GetProperty("actor").GetString());
    }

    [Fact]
    public async Task Expired_revocations_are_pruned_by_the_leader_alone_and_the_followers_follow()
    {
        var a = await StartAsync("controlplane-a");
        await a.Logs.WaitForAsync(l => l.StartsWith("leading: controlplane-a ", StringComparison.Ordinal), 1, Timeout);
        var b = await StartAsync("controlplane-b");
        var onB = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        b.Get<IRevocationStore>().Changed += c =>
        {
            if (c.Action == "expire")
            {
                onB.TrySetResult();
            }
        };

        // Stored through B (a follower); its certificates expired a moment ago: the leader's pruner drops it.
        var now = DateTimeOffset.UtcNow;
        b.Get<IRevocationStore>().Revise(l => (l.With(Revocation.ForSerial("1c", now.AddHours(-2), now.AddSeconds(-1), "")), ["serial 1c"]), "revoke", "operator", null);

        await onB.Task.WaitAsync(Timeout);
        Assert.Empty(b.Get<IRevocationStore>().Current.Entries);
        await a.Logs.WaitForAsync(l => l.StartsWith("1 revocation(s) dropped: ", StringComparison.Ordinal), 1, Timeout);
        Assert.DoesNotContain(b.Logs.Lines, l => l.Contains("revocation(s) dropped", StringComparison.Ordinal));
        Assert.DoesNotContain(b.Logs.Lines, l => l.StartsWith("leading: ", StringComparison.Ordinal));
        Assert.Equal(a.Get<ConfigStore>().Current.Version, b.Get<ConfigStore>().Current.Version);

        // Who leads, as Prometheus sees it.
        Assert.Contains("\nztm_controlplane_leader 1\n", await ScrapeAsync(a), StringComparison.Ordinal);
        Assert.Contains("\nztm_controlplane_leader 0\n", await ScrapeAsync(b), StringComparison.Ordinal);
        Assert.Equal("controlplane-a", a.Get<IReplicaLeadership>().Leader);
        await _cluster.Api.WaitForAsync(_ => b.Get<IReplicaLeadership>().Leader == "controlplane-a", Timeout); // at B's next try
    }

    private static async Task<string> ScrapeAsync(KubernetesReplicaParts replica)
    {
        using var text = new MemoryStream();
        await replica.Get<ZeroTrustMesh.ControlPlane.Telemetry.ControlPlaneMetrics>().Registry.CollectAndExportAsTextAsync(text);
        return System.Text.Encoding.UTF8.GetString(text.ToArray());
    }

    [Fact]
    public async Task Replicas_whose_own_counts_differ_agree_on_the_version_of_the_same_content()
    {
        var a = await StartAsync("controlplane-a");
        // B's data directory has counted far more changes (a replica that ran alone for a while).
        Directory.CreateDirectory(Path.Combine(_cluster.Dir, "controlplane-b"));
        File.WriteAllText(Path.Combine(_cluster.Dir, "controlplane-b", "config-version.json"), """{"version":40,"digest":"other"}""");
        var b = await StartAsync("controlplane-b");

        Assert.Equal(a.Get<ConfigStore>().Current.Version, b.Get<ConfigStore>().Current.Version);
        var map = _cluster.Api.Get<V1ConfigMap>("v1", "configmaps", KubernetesReplicaParts.Namespace, SharedConfigVersions.Name)!;
        Assert.Equal(a.Get<ConfigStore>().Current.Version, "v" + map.Data[SharedConfigVersions.LatestKey]);
    }

    private async Task<KubernetesReplicaParts> StartAsync(string name)
    {
        var replica = await KubernetesReplicaParts.StartAsync(_cluster.Api, Path.Combine(_cluster.Dir, name), name);
        _cluster.Track(replica);
        return replica;
    }

    private ConfigMapRevocationStore Store() =>
        new(_cluster.Api.CreateClient(), KubernetesReplicaParts.Namespace, TimeProvider.System, NullLogger<ConfigMapRevocationStore>.Instance);
}
