using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Discovery;
using ZeroTrustMesh.ControlPlane.LeastPrivilege;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Yaml;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.LeastPrivilege;

/// <summary>Suggestions from the inventory's per-caller evidence, and AUDIT would-deny counts from observations.</summary>
public sealed class LeastPrivilegeTests : IDisposable
{
    private static readonly ObservationReporter Orders = new(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders"), "orders.shop");
    private static readonly ObservationReporter Payments = new(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/payments"), "payments.shop");
    private static readonly ObservationReporter Other = new(SpiffeId.Parse("spiffe://cluster.local/ns/shopx/sa/orders"), "orders.shopx");
    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    private const string Checkout = "spiffe://cluster.local/ns/shop/sa/checkout";

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));
    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-audit-counts-").FullName;

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    [Fact]
    public void The_suggestion_allows_exactly_the_observed_combinations_and_validates()
    {
        var inventory = new ApiInventory(new ApiInventoryOptions(), _time);
        var start = _time.GetUtcNow();
        for (var i = 0; i < 6; i++)
        {
            inventory.Consume(Orders, [Observe("GET", $"/orders/{i + 10}/lines", Frontend, start.AddSeconds(i))]);
        }
        inventory.Consume(Orders, [Observe("POST", "/orders", Checkout, start), Observe("GET", "/health", "plaintext", start)]);
        inventory.Consume(Orders, [Observe("DELETE", "/orders/1", Frontend, start, denied: true)]); // refused: never evidence
        inventory.Consume(Payments, [Observe("POST", "/payments", "spiffe://cluster.local/ns/shop/sa/orders", start)]);
        inventory.Consume(Other, [Observe("GET", "/x", Frontend, start)]); // another namespace
        _time.Advance(TimeSpan.FromMinutes(5));

        var suggestion = new PolicySuggester(inventory, _time).Suggest("shop", null, "AUDIT");

        Assert.Equal((2, 3), (suggestion.Policies, suggestion.Rules));
        Assert.Equal(["orders.shop GET /health: caller 'plaintext' (1 request(s)) has no SPIFFE ID (a PERMISSIVE port); a principal cannot name it"], suggestion.Skipped);
        Assert.Contains("    # rule 1: 6 request(s), first seen 2026-12-06T12:00:00Z, last seen 2026-12-06T12:00:05Z\n", suggestion.Yaml, StringComparison.Ordinal);
        Assert.Contains("    suggest.ztm.dev/rule-1: \"6 request(s), first seen 2026-12-06T12:00:00Z, last seen 2026-12-06T12:00:05Z\"\n", suggestion.Yaml, StringComparison.Ordinal);

        // It loads as 'ztmctl apply' reads it, and as ALLOW it allows exactly what was observed.
        var loaded = PolicyYaml.Load("suggested.yaml", suggestion.Yaml.Replace("action: AUDIT", "action: ALLOW", StringComparison.Ordinal));
        Assert.True(loaded.IsValid, string.Join("\n", loaded.Errors));
        var policies = loaded.Documents.Select(d => d.Resource).OfType<AuthorizationPolicy>().ToList();
        Assert.Equal(["suggested-orders", "suggested-payments"], policies.Select(p => p.Metadata.Name));
        Assert.Equal("6 request(s), first seen 2026-12-06T12:00:00Z, last seen 2026-12-06T12:00:05Z", policies[0].Metadata.Annotations["suggest.ztm.dev/rule-1"]);
        var orders = PolicyCompiler.Compile("v", new WorkloadRef("shop", "orders"), policies);
        Assert.True(Allowed(orders, Frontend, "GET", "/orders/99/lines"));
        Assert.True(Allowed(orders, Checkout, "POST", "/orders"));
        Assert.False(Allowed(orders, Checkout, "GET", "/orders/99/lines")); // another caller
        Assert.False(Allowed(orders, Frontend, "PUT", "/orders/99/lines")); // another method
        Assert.False(Allowed(orders, Frontend, "GET", "/orders/99")); // another path
        Assert.False(Allowed(orders, Frontend, "DELETE", "/orders/1")); // refused before: not suggested
    }

    [Fact]
    public void Since_leaves_out_callers_not_seen_recently_and_an_empty_namespace_has_no_services()
    {
        var inventory = new ApiInventory(new ApiInventoryOptions(), _time);
        inventory.Consume(Orders, [Observe("GET", "/orders", Checkout, _time.GetUtcNow())]);
        _time.Advance(TimeSpan.FromHours(2));
        inventory.Consume(Orders, [Observe("GET", "/orders", Frontend, _time.GetUtcNow())]);
        var suggester = new PolicySuggester(inventory, _time);

        var recent = suggester.Suggest("shop", TimeSpan.FromHours(1), "ALLOW");
        Assert.Equal(1, recent.Rules);
        Assert.Contains(Frontend, recent.Yaml, StringComparison.Ordinal);
        Assert.DoesNotContain(Checkout, recent.Yaml, StringComparison.Ordinal);
        Assert.Contains("action: ALLOW", recent.Yaml, StringComparison.Ordinal);
        Assert.Equal(2, suggester.Suggest("shop", null, "ALLOW").Rules);
        _time.Advance(TimeSpan.FromHours(1));
        var none = suggester.Suggest("shop", TimeSpan.FromMinutes(1), "ALLOW");
        Assert.Equal((0, 0, ""), (none.Policies, none.Rules, none.Yaml));
        Assert.Empty(suggester.ServicesIn("billing"));
        Assert.Empty(suggester.ServicesIn("hop")); // a suffix of 'shop' is not the namespace
    }

    [Theory]
    [InlineData("/", "/")]
    [InlineData("/orders", "/orders")]
    [InlineData("/orders/{order}/lines", "/orders/{*}/lines")]
    [InlineData("/users/{user}/orders/{order}", "/users/{*}/orders/{*}")]
    [InlineData("/a/*b", null)]
    [InlineData("/a/{b", null)]
    public void Inventory_templates_become_policy_paths(string template, string? path) =>
        Assert.Equal(path, PolicySuggester.PolicyPath(template));

    [Fact]
    public async Task Audit_counts_say_per_policy_how_many_requests_it_saw_and_would_have_denied()
    {
        var counts = CountsFollowing("shop/suggested-orders", "shopx/a");
        var at = _time.GetUtcNow();
        counts.Consume(Orders,
        [
            Audited(Observe("GET", "/orders/1", Frontend, at), matched: ["shop/suggested-orders"], unmatched: []),
            Audited(Observe("GET", "/admin", Frontend, at.AddSeconds(1)), matched: [], unmatched: ["shop/suggested-orders"]),
            Observe("GET", "/orders/2", Frontend, at), // no AUDIT policy applied
            Audited(Observe("GET", "/x", Frontend, at), matched: ["shop/not-in-force"], unmatched: []), // deleted meanwhile: not counted
        ]);
        counts.Consume(Other, [Audited(Observe("GET", "/x", Frontend, at), matched: ["shopx/a"], unmatched: [])]);

        var report = Assert.Single(await counts.ReportAsync("shop", CancellationToken.None));
        Assert.Equal(("shop/suggested-orders", 2L, 1L, at, at, at.AddSeconds(1), at.AddSeconds(1)),
            (report.Policy, report.Requests, report.WouldDeny, report.Since, report.FirstSeen, report.LastSeen, report.LastWouldDeny));
        Assert.Equal([$"{Frontend} GET /admin"], report.Recent.Select(s => s.Request));
        Assert.Equal(["shop/suggested-orders", "shopx/a"], (await counts.ReportAsync("", CancellationToken.None)).Select(r => r.Policy));
        Assert.Null(Assert.Single(await counts.ReportAsync("shopx", CancellationToken.None)).LastWouldDeny);
    }

    [Fact]
    public async Task Audit_counts_keep_the_last_few_would_deny_samples_only()
    {
        var counts = CountsFollowing("shop/p");
        for (var i = 0; i < 20; i++)
        {
            counts.Consume(Orders, [Audited(Observe("GET", $"/x/{i}", Frontend, _time.GetUtcNow().AddSeconds(i)), matched: [], unmatched: ["shop/p"])]);
            if (i == 10)
            {
                await counts.FlushAsync(CancellationToken.None); // samples of the stored counts and of this replica's merge by time
            }
        }
        var report = Assert.Single(await counts.ReportAsync("shop", CancellationToken.None));
        Assert.Equal(20, report.WouldDeny);
        Assert.Equal(AuditCounts.RecentSamples, report.Recent.Count);
        Assert.Equal($"{Frontend} GET /x/19", report.Recent[0].Request); // newest first
    }

    /// <summary>Counts in the test's data directory, following AUDIT policies with these names (namespace/name).</summary>
    private AuditCounts CountsFollowing(params string[] policies)
    {
        var counts = new AuditCounts(new FileAuditCountStore(_dataDir), _time, Microsoft.Extensions.Logging.Abstractions.NullLogger<AuditCounts>.Instance);
        counts.Follow(policies.Select(p => new AuthorizationPolicy(new ResourceMetadata(p.Split('/')[1], p.Split('/')[0]),
            new AuthorizationPolicySpec(null, PolicyAction.Audit, []))));
        return counts;
    }

    private static bool Allowed(PolicySnapshot snapshot, string caller, string method, string path)
    {
        var id = SpiffeId.Parse(caller);
        id.TryGetWorkload(out var ns, out _);
        return snapshot.Evaluate(new RequestAttributes { Caller = id, CallerNamespace = ns, Method = method, Path = path, Port = 8080 }, default).Allowed;
    }

    private static Observation Audited(Observation o, string[] matched, string[] unmatched)
    {
        o.AuditMatched.AddRange(matched);
        o.AuditUnmatched.AddRange(unmatched);
        return o;
    }

    private static Observation Observe(string method, string path, string caller, DateTimeOffset at, bool denied = false) => new()
    {
        At = Timestamp.FromDateTimeOffset(at),
        Caller = caller,
        Method = method,
        Path = path,
        Status = denied ? 403u : 200u,
        Decision = denied ? Decision.Denied : Decision.Allowed,
    };
}
