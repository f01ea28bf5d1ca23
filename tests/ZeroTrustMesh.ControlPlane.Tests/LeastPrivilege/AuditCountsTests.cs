using Google.Protobuf.WellKnownTypes;
using k8s.Models;
using Microsoft.Extensions.DependencyInjection;
using ZeroTrustMesh.ControlPlane.LeastPrivilege;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.LeastPrivilege;

/// <summary>
/// The AUDIT counts as <c>ztm-controlplane</c> composes them: per policy content, kept in the data directory across a
/// restart, started over when the spec changes (not when only metadata does).
/// </summary>
public sealed class AuditCountsTests() : ControlPlanePartsTest("audit-counts")
{
    internal const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    internal static readonly ObservationReporter Orders = new(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders"), "orders.shop");

    internal static string Suggested(string paths, string annotation = "first") => $$"""
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata:
          name: suggested-orders
          namespace: shop
          annotations:
            suggest.ztm.dev/rule-0: "{{annotation}}"
        spec:
          selector:
            service: orders
          action: AUDIT
          rules:
            - from:
                - source:
                    principals: ["{{Frontend}}"]
              to:
                - operation:
                    methods: ["GET"]
                    paths: [{{paths}}]
        """;

    [Fact]
    public async Task A_restart_keeps_the_counts_and_when_they_began()
    {
        var parts = await StartPartsAsync(s => s.AddLeastPrivilege());
        parts.Get<IPolicySource>().Apply("suggested.yaml", Suggested("\"/orders/{*}\""), "operator");
        var applied = Time.GetUtcNow();
        Time.Advance(TimeSpan.FromMinutes(1));
        parts.Get<AuditCounts>().Consume(Orders, [Audited("/orders/1", matched: true), Audited("/admin", matched: false)]);
        await parts.StopAsync(); // flushes

        Assert.True(File.Exists(Path.Combine(DataDir, FileAuditCountStore.FileName)));
        Time.Advance(TimeSpan.FromMinutes(5));
        var again = await StartPartsAsync(s => s.AddLeastPrivilege());
        again.Get<AuditCounts>().Consume(Orders, [Audited("/orders/2", matched: true)]); // not flushed: counted all the same

        var report = Assert.Single(await again.Get<AuditCounts>().ReportAsync("shop", CancellationToken.None));
        Assert.Equal(("shop/suggested-orders", 3L, 1L, applied), (report.Policy, report.Requests, report.WouldDeny, report.Since));
        Assert.Equal([$"{Frontend} GET /admin"], report.Recent.Select(s => s.Request));
    }

    [Fact]
    public async Task A_changed_spec_starts_over_from_when_it_was_applied_and_a_changed_annotation_does_not()
    {
        var parts = await StartPartsAsync(s => s.AddLeastPrivilege());
        var policies = parts.Get<IPolicySource>();
        var counts = parts.Get<AuditCounts>();
        policies.Apply("suggested.yaml", Suggested("\"/orders/{*}\""), "operator");
        Time.Advance(TimeSpan.FromMinutes(1));
        counts.Consume(Orders, [Audited("/orders/1", matched: true), Audited("/admin", matched: false)]);
        await counts.FlushAsync(CancellationToken.None);
        var first = Assert.Single(await counts.ReportAsync("shop", CancellationToken.None));

        // Only the evidence annotation changes: the same content, counting goes on.
        policies.Apply("suggested.yaml", Suggested("\"/orders/{*}\"", annotation: "second"), "operator");
        var same = Assert.Single(await counts.ReportAsync("shop", CancellationToken.None));
        Assert.Equal((first.Generation, first.Since, 2L, 1L), (same.Generation, same.Since, same.Requests, same.WouldDeny));

        // The rules change: the counts start over, from now; a request decided before (stamped earlier, reported late) is not counted.
        Time.Advance(TimeSpan.FromMinutes(1));
        var before = Time.GetUtcNow().AddSeconds(-1);
        policies.Apply("suggested.yaml", Suggested("\"/orders/{*}\", \"/admin\""), "operator");
        var changed = Assert.Single(await counts.ReportAsync("shop", CancellationToken.None));
        Assert.NotEqual(first.Generation, changed.Generation);
        Assert.Equal((Time.GetUtcNow(), 0L, 0L, (DateTimeOffset?)null), (changed.Since, changed.Requests, changed.WouldDeny, changed.LastSeen));
        Assert.Empty(changed.Recent);
        counts.Consume(Orders, [Audited("/admin", matched: false, at: before), Audited("/admin", matched: true), Audited("/x", matched: false)]);
        await counts.FlushAsync(CancellationToken.None);
        var now = Assert.Single(await counts.ReportAsync("shop", CancellationToken.None));
        Assert.Equal((changed.Generation, 2L, 1L), (now.Generation, now.Requests, now.WouldDeny));
        Assert.Equal([$"{Frontend} GET /x"], now.Recent.Select(s => s.Request));

        // Deleted: no longer reported.
        policies.Delete(new ResourceKey("AuthorizationPolicy", "shop", "suggested-orders"), "operator");
        Assert.Empty(await counts.ReportAsync("", CancellationToken.None));
    }

    [Fact]
    public async Task Counts_that_cannot_be_stored_are_kept_for_the_next_flush_and_an_unreadable_file_is_replaced()
    {
        var path = Path.Combine(DataDir, FileAuditCountStore.FileName);
        await File.WriteAllTextAsync(path, "{not json");
        var parts = await StartPartsAsync(s => s.AddLeastPrivilege());
        parts.Get<IPolicySource>().Apply("suggested.yaml", Suggested("\"/orders/{*}\""), "operator");
        var counts = parts.Get<AuditCounts>();
        counts.Consume(Orders, [Audited("/admin", matched: false)]);
        Assert.Equal(1, Assert.Single(await counts.ReportAsync("shop", CancellationToken.None)).Requests);

        // A directory where the file goes: the write fails, the counts stay.
        File.Delete(path);
        Directory.CreateDirectory(path);
        await counts.FlushAsync(CancellationToken.None);
        Assert.Equal(1, Assert.Single(await counts.ReportAsync("shop", CancellationToken.None)).Requests);
        Directory.Delete(path);
        counts.Consume(Orders, [Audited("/orders/1", matched: true)]);
        await counts.FlushAsync(CancellationToken.None);
        var stored = await new FileAuditCountStore(DataDir).LoadAsync(CancellationToken.None);
        Assert.Equal((2L, 1L), (Assert.Single(stored.Policies).Requests, stored.Policies[0].WouldDeny));
    }

    internal Observation Audited(string path, bool matched, DateTimeOffset? at = null) => Audited(path, matched, at ?? Time.GetUtcNow());

    internal static Observation Audited(string path, bool matched, DateTimeOffset at)
    {
        var o = new Observation { At = Timestamp.FromDateTimeOffset(at), Caller = Frontend, Method = "GET", Path = path, Status = 200, Decision = Decision.Allowed };
        (matched ? o.AuditMatched : o.AuditUnmatched).Add("shop/suggested-orders");
        return o;
    }
}

/// <summary>
/// The AUDIT counts of two replicas against the Kubernetes API double: each adds what its own sidecars served to one
/// ConfigMap, so either reports the union; concurrent flushes lose nothing; a failed write keeps the counts; a replica
/// that starts later reports them.
/// </summary>
public sealed class AuditCountsAcrossReplicasTests : IAsyncLifetime
{
    private readonly ReplicaCluster _cluster = new("ztm-audit-replicas-");

    public Task InitializeAsync() => _cluster.InitializeAsync();

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Either_replica_reports_the_union_of_what_both_counted()
    {
        var a = await StartAsync("controlplane-a");
        var b = await StartAsync("controlplane-b");
        var now = DateTimeOffset.UtcNow;
        a.Get<AuditCounts>().Consume(AuditCountsTests.Orders, [AuditCountsTests.Audited("/orders/1", true, now), AuditCountsTests.Audited("/admin/a", false, now)]);
        b.Get<AuditCounts>().Consume(AuditCountsTests.Orders, [AuditCountsTests.Audited("/admin/b", false, now.AddSeconds(1))]);

        // Before a flush each replica knows its own sidecars' counts.
        Assert.Equal((2L, 1L), Totals(await ReportAsync(a)));
        Assert.Equal((1L, 1L), Totals(await ReportAsync(b)));

        await Task.WhenAll(a.Get<AuditCounts>().FlushAsync(CancellationToken.None), b.Get<AuditCounts>().FlushAsync(CancellationToken.None));
        foreach (var replica in new[] { a, b })
        {
            var report = await ReportAsync(replica);
            Assert.Equal((3L, 2L), Totals(report));
            Assert.Equal([$"{AuditCountsTests.Frontend} GET /admin/b", $"{AuditCountsTests.Frontend} GET /admin/a"], report.Recent.Select(s => s.Request));
        }
        var map = _cluster.Api.Get<V1ConfigMap>("v1", "configmaps", KubernetesReplicaParts.Namespace, ConfigMapAuditCountStore.Name)!;
        Assert.Equal("1", map.Data["policies"]);

        // Both flush at once, again and again: optimistic writes, nothing lost or counted twice.
        for (var round = 0; round < 10; round++)
        {
            a.Get<AuditCounts>().Consume(AuditCountsTests.Orders, [AuditCountsTests.Audited("/orders/2", true, now.AddSeconds(2))]);
            b.Get<AuditCounts>().Consume(AuditCountsTests.Orders, [AuditCountsTests.Audited("/orders/3", true, now.AddSeconds(2)), AuditCountsTests.Audited("/orders/4", true, now.AddSeconds(2))]);
            await Task.WhenAll(a.Get<AuditCounts>().FlushAsync(CancellationToken.None), b.Get<AuditCounts>().FlushAsync(CancellationToken.None));
        }
        Assert.Equal((33L, 2L), Totals(await ReportAsync(b)));

        // The API fails a write: A keeps its counts and adds them at the next flush.
        _cluster.Api.Fail(r => r.Method == "PUT" && r.Path.Value!.EndsWith("/" + ConfigMapAuditCountStore.Name, StringComparison.Ordinal), 1, 500);
        a.Get<AuditCounts>().Consume(AuditCountsTests.Orders, [AuditCountsTests.Audited("/admin/c", false, now.AddSeconds(3))]);
        await a.Get<AuditCounts>().FlushAsync(CancellationToken.None);
        await a.Logs.WaitForAsync(l => l.StartsWith($"AUDIT counts not stored in ConfigMap {KubernetesReplicaParts.Namespace}/{ConfigMapAuditCountStore.Name} (cannot write ", StringComparison.Ordinal), 1, TimeSpan.FromSeconds(20));
        Assert.Equal((33L, 2L), Totals(await ReportAsync(b)));
        Assert.Equal((34L, 3L), Totals(await ReportAsync(a)));
        await a.Get<AuditCounts>().FlushAsync(CancellationToken.None);
        Assert.Equal((34L, 3L), Totals(await ReportAsync(b)));

        // Both stop; a replica that starts now reports all of it, since when it began.
        var since = (await ReportAsync(a)).Since;
        await a.DisposeAsync();
        await b.DisposeAsync();
        var c = await StartAsync("controlplane-c");
        var late = await ReportAsync(c);
        Assert.Equal((34L, 3L, since), (late.Requests, late.WouldDeny, late.Since));
    }

    private static (long Requests, long WouldDeny) Totals(AuditPolicyRecord report) => (report.Requests, report.WouldDeny);

    private static async Task<AuditPolicyRecord> ReportAsync(KubernetesReplicaParts replica) =>
        Assert.Single(await replica.Get<AuditCounts>().ReportAsync("shop", CancellationToken.None));

    private async Task<KubernetesReplicaParts> StartAsync(string name)
    {
        var dataDir = Path.Combine(_cluster.Dir, name);
        var policies = Directory.CreateDirectory(Path.Combine(dataDir, "policies")).FullName;
        File.WriteAllText(Path.Combine(policies, "suggested.yaml"), AuditCountsTests.Suggested("\"/orders/{*}\""));
        return _cluster.Track(await KubernetesReplicaParts.StartAsync(_cluster.Api, dataDir, name, configure: services =>
        {
            // Flushes are the test's: an interval that never comes.
            services.AddSingleton(new AuditCountOptions { FlushInterval = TimeSpan.FromDays(1) });
            services.AddLeastPrivilege();
        }));
    }
}
