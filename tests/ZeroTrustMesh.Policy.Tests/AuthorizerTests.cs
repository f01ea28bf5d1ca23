using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using static ZeroTrustMesh.Policy.Tests.PolicyTestSupport;

namespace ZeroTrustMesh.Policy.Tests;

public sealed class AuthorizerTests
{
    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    private const string Batch = "spiffe://cluster.local/ns/batch/sa/nightly";
    private const string Other = "spiffe://other.example/ns/shop/sa/frontend";

    /// <summary>The spec of an ALLOW policy for orders with one rule made of <paramref name="rule"/> (YAML under '- ').</summary>
    private static string Allow(string rule) => Doc("p", $"  selector:\n    service: orders\n  action: ALLOW\n  rules:\n    - {rule}\n");

    private static string Op(string operation) => $"to:\n        - operation:\n            {operation}";

    private static string Src(string source) => $"from:\n        - source:\n            {source}";

    private static string When(string condition) => $"when:\n        - {condition}";

    public static TheoryData<string, string, Req, bool> Matchers => new()
    {
        // principals
        { "principal exact", Allow(Src($"principals: [\"{Frontend}\"]")), new Req(Frontend), true },
        { "principal exact, other caller", Allow(Src($"principals: [\"{Frontend}\"]")), new Req(Batch), false },
        { "principal exact, other trust domain", Allow(Src($"principals: [\"{Frontend}\"]")), new Req(Other), false },
        { "principal wildcard path", Allow(Src("principals: [\"spiffe://cluster.local/ns/batch/*\"]")), new Req(Batch), true },
        { "principal wildcard path, other namespace", Allow(Src("principals: [\"spiffe://cluster.local/ns/batch/*\"]")), new Req(Frontend), false },
        { "principal '*' needs a caller", Allow(Src("principals: [\"*\"]")), new Req(null), false },
        { "principal '*' any caller", Allow(Src("principals: [\"*\"]")), new Req(Other), true },
        // namespaces
        { "namespace", Allow(Src("namespaces: [batch]")), new Req(Batch), true },
        { "namespace, other", Allow(Src("namespaces: [batch]")), new Req(Frontend), false },
        { "namespace and principal both required", Allow(Src($"principals: [\"{Frontend}\"]\n            namespaces: [batch]")), new Req(Frontend), false },
        // request principals
        { "request principal", Allow(Src("requestPrincipals: [\"https://auth.example/alice\"]")), new Req { Claims = new() { ["iss"] = ["https://auth.example"], ["sub"] = ["alice"] } }, true },
        { "request principal issuer wildcard", Allow(Src("requestPrincipals: [\"https://auth.example/*\"]")), new Req { Claims = new() { ["iss"] = ["https://auth.example"], ["sub"] = ["bob"] } }, true },
        { "request principal, no JWT", Allow(Src("requestPrincipals: [\"*\"]")), new Req(), false },
        // methods
        { "method", Allow(Op("methods: [GET, HEAD]")), new Req(Method: "HEAD"), true },
        { "method, other", Allow(Op("methods: [GET]")), new Req(Method: "POST"), false },
        { "method '*' includes unknown methods", Allow(Op("methods: [\"*\"]")), new Req(Method: "PROPFIND"), true },
        { "unknown method never matches a list", Allow(Op("methods: [GET]")), new Req(Method: "PROPFIND"), false },
        // paths
        { "path exact", Allow(Op("paths: [/orders]")), new Req(Path: "/orders"), true },
        { "path exact ignores the query", Allow(Op("paths: [/orders]")), new Req(Path: "/orders?id=1"), true },
        { "path exact is not a prefix", Allow(Op("paths: [/orders]")), new Req(Path: "/orders/1"), false },
        { "path exact is case-sensitive", Allow(Op("paths: [/orders]")), new Req(Path: "/Orders"), false },
        { "path prefix", Allow(Op("paths: [\"/orders/*\"]")), new Req(Path: "/orders/1/lines"), true },
        { "path prefix needs the slash", Allow(Op("paths: [\"/orders/*\"]")), new Req(Path: "/ordersX"), false },
        { "path prefix without slash", Allow(Op("paths: [\"/ord*\"]")), new Req(Path: "/ordersX"), true },
        { "path suffix", Allow(Op("paths: [\"*.json\"]")), new Req(Path: "/a/b.json"), true },
        { "path suffix, other", Allow(Op("paths: [\"*.json\"]")), new Req(Path: "/a/b.xml"), false },
        { "path '*'", Allow(Op("paths: [\"*\"]")), new Req(Path: "/anything"), true },
        { "path prefixes of several lengths, the longest matches", Allow(Op("paths: [\"/a/*\", \"/orders/1/*\", \"/orders/12/lines/*\"]")), new Req(Path: "/orders/12/lines/3"), true },
        { "path prefixes of several lengths, the shortest matches", Allow(Op("paths: [\"/a/*\", \"/orders/1/*\", \"/orders/12/lines/*\"]")), new Req(Path: "/a/b"), true },
        { "path prefixes of several lengths, none matches", Allow(Op("paths: [\"/a/*\", \"/orders/1/*\", \"/orders/12/lines/*\"]")), new Req(Path: "/orders/12/x"), false },
        { "path prefix longer than the path", Allow(Op("paths: [\"/orders/12/lines/*\"]")), new Req(Path: "/orders"), false },
        { "path suffixes of several lengths", Allow(Op("paths: [\"*.js\", \"*.json\", \"*/health.txt\"]")), new Req(Path: "/a/b.json"), true },
        { "path suffixes of several lengths, none matches", Allow(Op("paths: [\"*.js\", \"*.json\", \"*/health.txt\"]")), new Req(Path: "/a/b.jsonx"), false },
        // path templates
        { "template one segment", Allow(Op("paths: [\"/orders/{*}/lines\"]")), new Req(Path: "/orders/42/lines"), true },
        { "template one segment, query ignored", Allow(Op("paths: [\"/orders/{*}/lines\"]")), new Req(Path: "/orders/42/lines?x=1"), true },
        { "template one segment is not two", Allow(Op("paths: [\"/orders/{*}/lines\"]")), new Req(Path: "/orders/4/2/lines"), false },
        { "template one segment is not none", Allow(Op("paths: [\"/orders/{*}/lines\"]")), new Req(Path: "/orders/lines"), false },
        { "template one segment is not empty", Allow(Op("paths: [\"/orders/{*}/lines\"]")), new Req(Path: "/orders//lines"), false },
        { "template literal after the operator", Allow(Op("paths: [\"/orders/{*}/lines\"]")), new Req(Path: "/orders/42/items"), false },
        { "template nothing after the end", Allow(Op("paths: [\"/orders/{*}/lines\"]")), new Req(Path: "/orders/42/lines/1"), false },
        { "template trailing slash is not the path", Allow(Op("paths: [\"/orders/{*}\"]")), new Req(Path: "/orders/42/"), false },
        { "template at the start", Allow(Op("paths: [\"/{*}/health\"]")), new Req(Path: "/v1/health"), true },
        { "template two operators", Allow(Op("paths: [\"/users/{*}/orders/{*}\"]")), new Req(Path: "/users/u1/orders/o2"), true },
        { "template any segments, one", Allow(Op("paths: [\"/files/{**}\"]")), new Req(Path: "/files/a"), true },
        { "template any segments, several", Allow(Op("paths: [\"/files/{**}\"]")), new Req(Path: "/files/a/b/c.txt"), true },
        { "template any segments, none", Allow(Op("paths: [\"/files/{**}\"]")), new Req(Path: "/files"), false },
        { "template any segments, empty", Allow(Op("paths: [\"/files/{**}\"]")), new Req(Path: "/files/"), false },
        { "template any segments, other root", Allow(Op("paths: [\"/files/{**}\"]")), new Req(Path: "/filesX/a"), false },
        { "template and a method", Allow(Op("methods: [GET]\n            paths: [\"/orders/{*}\"]")), new Req(Method: "POST", Path: "/orders/1"), false },
        { "template beside an exact path", Allow(Op("paths: [/health, \"/orders/{*}\"]")), new Req(Path: "/orders/9"), true },
        { "template beside a suffix (not indexed)", Allow(Op("paths: [\"*.json\", \"/orders/{*}\"]")), new Req(Path: "/orders/9"), true },
        // ports
        { "port", Allow(Op("ports: [8080, 9090]")), new Req(Port: 9090), true },
        { "port, other", Allow(Op("ports: [8080]")), new Req(Port: 9091), false },
        { "operation fields are ANDed", Allow(Op("methods: [GET]\n            paths: [/a]")), new Req(Method: "GET", Path: "/b"), false },
        // headers
        { "header", Allow(When("key: request.headers[X-Tenant]\n          values: [acme]")), new Req { Headers = new() { ["x-tenant"] = ["acme"] } }, true },
        { "header prefix value", Allow(When("key: request.headers[x-tenant]\n          values: [\"ac*\"]")), new Req { Headers = new() { ["x-tenant"] = ["acme"] } }, true },
        { "header, second value", Allow(When("key: request.headers[x-tenant]\n          values: [acme]")), new Req { Headers = new() { ["x-tenant"] = ["globex", "acme"] } }, true },
        { "header absent", Allow(When("key: request.headers[x-tenant]\n          values: [acme]")), new Req(), false },
        { "header notValues, absent", Allow(When("key: request.headers[x-debug]\n          notValues: [\"*\"]")), new Req(), true },
        { "header notValues, present", Allow(When("key: request.headers[x-debug]\n          notValues: [\"*\"]")), new Req { Headers = new() { ["x-debug"] = ["1"] } }, false },
        // claims
        { "claim", Allow(When("key: request.auth.claims[role]\n          values: [admin]")), new Req { Claims = new() { ["role"] = ["admin"] } }, true },
        { "claim array element", Allow(When("key: request.auth.claims[groups]\n          values: [ops]")), new Req { Claims = new() { ["groups"] = ["dev", "ops"] } }, true },
        { "scope is space-separated", Allow(When("key: request.auth.claims[scope]\n          values: [\"write:payments\"]")), new Req { Claims = new() { ["scope"] = ["read:payments write:payments"] } }, true },
        { "scope token must be whole", Allow(When("key: request.auth.claims[scope]\n          values: [\"write:payments\"]")), new Req { Claims = new() { ["scope"] = ["write:payments-admin read"] } }, false },
        { "other claims are not split", Allow(When("key: request.auth.claims[name]\n          values: [John]")), new Req { Claims = new() { ["name"] = ["John Smith"] } }, false },
        { "claim without JWT", Allow(When("key: request.auth.claims[scope]\n          values: [\"write:payments\"]")), new Req(), false },
        // source IP
        { "source ip v4 CIDR", Allow(When("key: source.ip\n          values: [10.1.0.0/16]")), new Req { Ip = "10.1.2.3" }, true },
        { "source ip v4 CIDR, outside", Allow(When("key: source.ip\n          values: [10.1.0.0/16]")), new Req { Ip = "10.2.0.1" }, false },
        { "source ip v4-mapped v6 address", Allow(When("key: source.ip\n          values: [10.1.0.0/16]")), new Req { Ip = "::ffff:10.1.2.3" }, true },
        { "source ip single address", Allow(When("key: source.ip\n          values: [192.168.1.7]")), new Req { Ip = "192.168.1.7" }, true },
        { "source ip v6 CIDR", Allow(When("key: source.ip\n          values: [\"fd00::/8\"]")), new Req { Ip = "fd12:3456::1" }, true },
        { "source ip v6 CIDR, outside", Allow(When("key: source.ip\n          values: [\"fd00::/8\"]")), new Req { Ip = "fe80::1" }, false },
        { "source ip v6 range never matches v4", Allow(When("key: source.ip\n          values: [\"::/0\"]")), new Req { Ip = "10.0.0.1" }, false },
        { "source ip notValues", Allow(When("key: source.ip\n          notValues: [10.0.0.0/8]")), new Req { Ip = "10.0.0.1" }, false },
        // time windows
        { "time window UTC", Allow(When("key: request.time\n          values: [\"09:00-17:00\"]")), new Req { Now = At("2025-06-04T16:59:00Z") }, true },
        { "time window end is exclusive", Allow(When("key: request.time\n          values: [\"09:00-17:00\"]")), new Req { Now = At("2025-06-04T17:00:00Z") }, false },
        { "time window in Paris (UTC+2 in June)", Allow(When("key: request.time\n          values: [\"09:00-17:00\"]\n          timeZone: Europe/Paris")), new Req { Now = At("2025-06-04T07:30:00Z") }, true },
        { "time window in Paris, after hours", Allow(When("key: request.time\n          values: [\"09:00-17:00\"]\n          timeZone: Europe/Paris")), new Req { Now = At("2025-06-04T15:30:00Z") }, false },
        { "time window in Paris (UTC+1 in January)", Allow(When("key: request.time\n          values: [\"09:00-17:00\"]\n          timeZone: Europe/Paris")), new Req { Now = At("2025-01-08T15:30:00Z") }, true },
        { "across midnight, late", Allow(When("key: request.time\n          values: [\"22:00-06:00\"]")), new Req { Now = At("2025-06-04T23:00:00Z") }, true },
        { "across midnight, early", Allow(When("key: request.time\n          values: [\"22:00-06:00\"]")), new Req { Now = At("2025-06-04T05:59:00Z") }, true },
        { "across midnight, daytime", Allow(When("key: request.time\n          values: [\"22:00-06:00\"]")), new Req { Now = At("2025-06-04T12:00:00Z") }, false },
        { "days", Allow(When("key: request.time\n          values: [\"00:00-24:00\"]\n          days: [Sat, Sun]")), new Req { Now = At("2025-06-07T12:00:00Z") }, true },
        { "days, weekday", Allow(When("key: request.time\n          values: [\"00:00-24:00\"]\n          days: [Sat, Sun]")), new Req { Now = At("2025-06-04T12:00:00Z") }, false },
        { "across midnight belongs to its start day (Fri night, Sat 02:00)", Allow(When("key: request.time\n          values: [\"22:00-06:00\"]\n          days: [Fri]")), new Req { Now = At("2025-06-07T02:00:00Z") }, true },
        { "across midnight belongs to its start day (Fri 02:00)", Allow(When("key: request.time\n          values: [\"22:00-06:00\"]\n          days: [Fri]")), new Req { Now = At("2025-06-06T02:00:00Z") }, false },
        { "time zone moves the day", Allow(When("key: request.time\n          values: [\"00:00-24:00\"]\n          days: [Thu]\n          timeZone: Asia/Tokyo")), new Req { Now = At("2025-06-04T20:00:00Z") }, true },
        // combinations
        { "empty rule matches everything", Allow("{}"), new Req(null, "DELETE", "/x"), true },
        { "all conditions must match", Allow("when:\n        - key: request.headers[a]\n          values: [\"1\"]\n        - key: request.headers[b]\n          values: [\"2\"]"), new Req { Headers = new() { ["a"] = ["1"] } }, false },
    };

    private static DateTimeOffset At(string iso) => DateTimeOffset.Parse(iso, System.Globalization.CultureInfo.InvariantCulture);

    [Theory]
    [MemberData(nameof(Matchers))]
    public void Matcher(string name, string yaml, Req request, bool allowed)
    {
        var decision = Decide(Compile(yaml), request);
        Assert.True(allowed == decision.Allowed, $"{name}: {decision}");
        if (allowed)
        {
            Assert.Equal("shop/p", decision.Policy);
            Assert.Equal(0, decision.Rule);
        }
        else
        {
            Assert.Equal(AuthorizationDecision.NoAllowPolicyMatched, decision.Reason);
        }
    }

    private const string AllowFrontendOrders = """
          action: ALLOW
          rules:
            - from:
                - source:
                    principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
              to:
                - operation:
                    paths: ["/orders/*"]
        """;

    private const string DenyDelete = """
          action: DENY
          rules:
            - to:
                - operation:
                    methods: [DELETE]
        """;

    private const string AuditAll = """
          action: AUDIT
          rules:
            - {}
        """;

    [Fact]
    public void Deny_wins_over_allow()
    {
        var snapshot = Compile(Doc("allow", AllowFrontendOrders) + "\n---\n" + Doc("deny", DenyDelete));
        var deleted = Decide(snapshot, new Req(Method: "DELETE", Path: "/orders/1"));
        Assert.False(deleted.Allowed);
        Assert.Equal("shop/deny", deleted.Policy);
        Assert.Equal("denied by DENY policy 'shop/deny' rule 0", deleted.Reason);
        Assert.True(Decide(snapshot, new Req(Path: "/orders/1")).Allowed);
    }

    [Fact]
    public void Without_an_allow_policy_everything_is_denied()
    {
        var onlyDeny = Compile(Doc("deny", DenyDelete));
        var decision = Decide(onlyDeny, new Req());
        Assert.False(decision.Allowed);
        Assert.Equal(AuthorizationDecision.NoAllowPolicy, decision.Reason);
        Assert.Equal(-1, decision.Rule);
        Assert.Null(decision.Policy);

        Assert.Equal(AuthorizationDecision.NoAllowPolicy, Decide(PolicySnapshot.Empty(Orders), new Req()).Reason);
        Assert.False(PolicySnapshot.Empty(Orders).Evaluate(default, default).Allowed);
    }

    [Fact]
    public void An_allow_policy_without_rules_allows_nothing()
    {
        var decision = Decide(Compile(Doc("nothing", "  action: ALLOW\n")), new Req());
        Assert.False(decision.Allowed);
        Assert.Equal(AuthorizationDecision.NoAllowPolicyMatched, decision.Reason);
    }

    [Fact]
    public void Audit_outcome_names_the_audit_policies_whose_rules_did_not_match()
    {
        const string suggested = """
              action: AUDIT
              rules:
                - from:
                    - source:
                        principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
                  to:
                    - operation:
                        methods: [GET]
                        paths: ["/orders/{*}"]
            """;
        var snapshot = Compile(Doc("allow", "  action: ALLOW\n  rules:\n    - {}\n") + "\n---\n" + Doc("suggested", suggested)
            + "\n---\n" + Doc("empty", "  action: AUDIT\n") + "\n---\n" + Doc("all", AuditAll));
        Assert.Equal(["shop/all", "shop/empty", "shop/suggested"], snapshot.AuditPolicies);

        var legitimate = Decide(snapshot, new Req(Path: "/orders/7"));
        Assert.True(legitimate.Allowed);
        Assert.Equal(["shop/all", "shop/empty", "shop/suggested"], legitimate.Audit.Policies.ToArray());
        Assert.Equal([true, false, true], Enumerable.Range(0, 3).Select(legitimate.Audit.Matched));
        Assert.Equal(1, legitimate.Audit.UnmatchedCount); // a policy without rules matches nothing

        foreach (var outside in new[] { new Req(Batch, Path: "/orders/7"), new Req(Method: "DELETE", Path: "/orders/7"), new Req(Path: "/orders/7/lines") })
        {
            var decision = Decide(snapshot, outside);
            Assert.True(decision.Allowed); // AUDIT never decides
            Assert.False(decision.Audit.Matched(2), outside.ToString());
            Assert.Equal(2, decision.Audit.UnmatchedCount);
        }

        Assert.Equal(0, Decide(Compile(Doc("allow", "  action: ALLOW\n")), new Req()).Audit.Policies.Length);
    }

    [Fact]
    public void Audit_is_recorded_and_never_changes_the_decision()
    {
        var audits = new RuleMatch[4];
        var onlyAudit = Compile(Doc("audit", AuditAll));
        var denied = Decide(onlyAudit, new Req(), audits);
        Assert.False(denied.Allowed);
        Assert.Equal(AuthorizationDecision.NoAllowPolicy, denied.Reason);
        Assert.Equal(1, denied.AuditCount);
        Assert.Equal(new RuleMatch("shop/audit", 0), audits[0]);

        var withAllow = Compile(Doc("allow", AllowFrontendOrders) + "\n---\n" + Doc("audit", AuditAll));
        var allowed = Decide(withAllow, new Req(Path: "/orders/1"));
        Assert.True(allowed.Allowed);
        Assert.Equal("shop/allow", allowed.Policy);
        Assert.Equal(new RuleMatch("shop/audit", 0), allowed.FirstAudit);
    }

    [Fact]
    public void Policies_for_other_workloads_or_namespaces_do_not_apply()
    {
        var yaml = Doc("for-payments", "  selector:\n    service: payments\n  action: ALLOW\n  rules:\n    - {}\n")
            + "\n---\n" + Doc("namespace-wide", "  action: DENY\n  rules:\n    - to:\n        - operation:\n            paths: [/x]\n")
            + "\n---\napiVersion: security.ztm.dev/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: elsewhere\n  namespace: billing\nspec:\n  rules:\n    - {}\n";
        var snapshot = Compile(yaml);
        Assert.Equal(1, snapshot.PolicyCount);
        Assert.False(snapshot.HasAllowPolicy);
        Assert.Equal("shop/namespace-wide", Decide(snapshot, new Req(Path: "/x")).Policy);
    }

    [Fact]
    public void Health_probe_paths_are_allowed_by_default_but_not_over_a_deny()
    {
        var snapshot = Compile(Doc("deny", DenyDelete), probes: ["/healthz", "/ready"]);
        var probe = Decide(snapshot, new Req(null, "GET", "/healthz"));
        Assert.True(probe.Allowed);
        Assert.Equal(AuthorizationDecision.HealthProbe, probe.Reason);
        Assert.False(Decide(snapshot, new Req(null, "POST", "/healthz")).Allowed);
        Assert.False(Decide(snapshot, new Req(null, "GET", "/healthz/x")).Allowed);
        Assert.False(Decide(snapshot, new Req(null, "DELETE", "/ready")).Allowed);
        Assert.Throws<Validation.PolicyValidationException>(() => PolicyCompiler.Compile("v", Orders, [], ["/health/*"]));
    }

    [Fact]
    public void The_deciding_rule_is_the_first_in_policy_order_whichever_index_found_it()
    {
        // 'a' is indexed by principal, 'b' by path, 'c' is unindexed: all match; the first by name decides.
        var yaml = Doc("c", "  rules:\n    - when:\n        - key: request.headers[x]\n          notValues: [\"no\"]\n")
            + "\n---\n" + Doc("b", "  rules:\n    - to:\n        - operation:\n            paths: [/orders/1]\n")
            + "\n---\n" + Doc("a", "  rules:\n    - {from: [{source: {principals: [\"spiffe://cluster.local/ns/shop/sa/frontend\"]}}]}\n    - {}\n");
        var snapshot = Compile(yaml);
        Assert.Equal(2, snapshot.UnindexedRuleCount); // 'c' and the second rule of 'a'
        var decision = Decide(snapshot, new Req(Path: "/orders/1"));
        Assert.Equal("shop/a", decision.Policy);
        Assert.Equal(0, decision.Rule);
        Assert.Equal("v1", decision.SnapshotVersion);
    }

    [Fact]
    public void Indexed_rules_still_check_everything_else()
    {
        // Filed under path /orders/ (prefix) and principal lookups; the method and the other source must still match.
        var snapshot = Compile(Doc("p", AllowFrontendOrders.Replace("paths: [\"/orders/*\"]", "paths: [\"/orders/*\"]\n            methods: [GET]", StringComparison.Ordinal)));
        Assert.Equal(1, snapshot.IndexedPathCount);
        Assert.True(Decide(snapshot, new Req(Path: "/orders/1")).Allowed);
        Assert.False(Decide(snapshot, new Req(Method: "POST", Path: "/orders/1")).Allowed);
        Assert.False(Decide(snapshot, new Req("spiffe://cluster.local/ns/shop/sa/payments", Path: "/orders/1")).Allowed);
        Assert.False(Decide(snapshot, new Req(Path: "/payments/1")).Allowed);
    }

    [Fact]
    public void A_decision_allocates_nothing()
    {
        var many = string.Join("\n---\n", Enumerable.Range(0, 200).Select(i =>
            Doc($"p{i}", $"  rules:\n    - from: [{{source: {{principals: [\"spiffe://cluster.local/ns/shop/sa/s{i}\"]}}}}]\n      to: [{{operation: {{methods: [GET], paths: [\"/svc{i}/*\"]}}}}]\n      when: [{{key: \"request.headers[x-tenant]\", notValues: [\"blocked\"]}}]\n")));
        var snapshot = Compile(many + "\n---\n" + Doc("deny", DenyDelete) + "\n---\n" + Doc("audit", AuditAll));
        var headers = new Values(new() { ["x-tenant"] = ["acme"] });
        var caller = Identity.SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/s150");
        Span<RuleMatch> audits = new RuleMatch[2];

        bool Run(Span<RuleMatch> audits)
        {
            var request = new RequestAttributes { Caller = caller, CallerNamespace = "shop", Method = "GET", Path = "/svc150/items/7?x=1", Port = 8080, Headers = headers };
            return snapshot.Evaluate(request, audits).Allowed;
        }

        Assert.True(Run(audits));
        // Warm up past tiered compilation's call counting: its one-time stubs allocated on this thread once (7,776 bytes
        // in one run of 1,000 decisions), which is the runtime's, not the decision's.
        for (var i = 0; i < 5_000; i++)
        {
            Run(audits);
        }
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Run(audits);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
    [Fact]
    public void A_decision_with_path_templates_and_audit_outcomes_allocates_nothing()
    {
        var many = string.Join("\n---\n", Enumerable.Range(0, 100).Select(i =>
            Doc($"t{i}", $"  rules:\n    - to: [{{operation: {{methods: [GET], paths: [\"/svc{i}/{{*}}/lines/{{*}}\", \"/files{i}/{{**}}\"]}}}}]\n")));
        var audit = Doc("suggested", "  action: AUDIT\n  rules:\n    - to: [{operation: {paths: [\"/svc50/{*}/lines/{*}\"]}}]\n");
        var snapshot = Compile(many + "\n---\n" + audit + "\n---\n" + Doc("empty", "  action: AUDIT\n"));

        bool Run()
        {
            var request = new RequestAttributes { Method = "GET", Path = "/svc50/o-17/lines/3", Port = 8080 };
            var decision = snapshot.Evaluate(request, default);
            return decision.Allowed && decision.Audit.UnmatchedCount == 1;
        }

        Assert.True(Run());
        for (var i = 0; i < 5_000; i++)
        {
            Run();
        }
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Run();
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
