using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Yaml;
using static ZeroTrustMesh.Policy.Tests.PolicyTestSupport;

namespace ZeroTrustMesh.Policy.Tests;

/// <summary>
/// A connection relayed as bytes (a declared TCP port, an L4-mode port) is authorized as Istio authorizes TCP traffic:
/// an ALLOW rule with HTTP-only fields matches no connection; a DENY or AUDIT rule applies without them.
/// </summary>
public sealed class ConnectionRulesTests
{
    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    private const string Cart = "spiffe://cluster.local/ns/shop/sa/cart";

    private const string AllowShop = """
          action: ALLOW
          rules:
            - from:
                - source:
                    namespaces: [shop]
        """;

    private static Req Connection(string caller = Frontend, int port = 5432, string? ip = null) => new(caller, Port: port) { Connection = true, Ip = ip };

    private static PolicySnapshot WithAllowShop(string name, string spec) => Compile(Doc("allow-shop", AllowShop) + "\n---\n" + Doc(name, spec));

    [Fact]
    public void A_deny_with_paths_denies_the_tcp_caller_and_still_only_those_paths_of_a_request()
    {
        var snapshot = WithAllowShop("no-admin", """
              action: DENY
              rules:
                - to:
                    - operation:
                        paths: ["/admin/*"]
            """);

        var connection = Decide(snapshot, Connection());
        Assert.False(connection.Allowed);
        Assert.Equal("shop/no-admin", connection.Policy);
        Assert.Equal(0, connection.Rule);
        Assert.Equal("denied by DENY policy 'shop/no-admin' rule 0 (paths ignored for a TCP connection)", connection.Reason);

        // Requests are read as before: only the paths the rule names are denied.
        Assert.True(Decide(snapshot, new Req(Frontend, Path: "/orders/1")).Allowed);
        var admin = Decide(snapshot, new Req(Frontend, Path: "/admin/users"));
        Assert.False(admin.Allowed);
        Assert.Equal("denied by DENY policy 'shop/no-admin' rule 0", admin.Reason);
    }

    [Fact]
    public void A_deny_with_paths_and_principals_denies_only_that_principal()
    {
        var snapshot = WithAllowShop("no-frontend-admin", $$"""
              action: DENY
              rules:
                - from:
                    - source:
                        principals: ["{{Frontend}}"]
                  to:
                    - operation:
                        methods: [DELETE]
                        paths: ["/admin"]
            """);

        var frontend = Decide(snapshot, Connection(Frontend));
        Assert.False(frontend.Allowed);
        Assert.Equal("denied by DENY policy 'shop/no-frontend-admin' rule 0 (methods, paths ignored for a TCP connection)", frontend.Reason);
        var cart = Decide(snapshot, Connection(Cart));
        Assert.True(cart.Allowed, cart.ToString());
        Assert.Equal("shop/allow-shop", cart.Policy);
    }

    [Fact]
    public void A_deny_keeps_its_ports_and_source_ip_on_a_connection()
    {
        var snapshot = WithAllowShop("no-db-admin", """
              action: DENY
              rules:
                - to:
                    - operation:
                        ports: [5432]
                        paths: ["/admin"]
                  when:
                    - key: source.ip
                      values: ["10.0.0.0/8"]
                    - key: request.headers[x-admin]
                      values: ["*"]
            """);

        Assert.False(Decide(snapshot, Connection(port: 5432, ip: "10.1.2.3")).Allowed);
        Assert.True(Decide(snapshot, Connection(port: 6379, ip: "10.1.2.3")).Allowed);
        Assert.True(Decide(snapshot, Connection(port: 5432, ip: "192.168.1.1")).Allowed);
    }

    [Theory]
    [InlineData("requestPrincipals", "from:\n        - source:\n            requestPrincipals: [\"https://issuer.test/*\"]")]
    [InlineData("when request.headers[x-debug]", "when:\n        - key: request.headers[x-debug]\n          values: [\"1\"]")]
    [InlineData("when request.auth.claims[role]", "when:\n        - key: request.auth.claims[role]\n          notValues: [\"admin\"]")]
    public void A_deny_on_request_identity_or_headers_denies_every_connection(string field, string rule)
    {
        var snapshot = WithAllowShop("deny", $"  action: DENY\n  rules:\n    - {rule}\n");

        var decision = Decide(snapshot, Connection());
        Assert.False(decision.Allowed);
        Assert.Equal($"denied by DENY policy 'shop/deny' rule 0 ({field} ignored for a TCP connection)", decision.Reason);
    }

    [Theory]
    [InlineData("to:\n        - operation:\n            paths: [\"/*\"]")]
    [InlineData("to:\n        - operation:\n            paths: [\"*\"]")] // '*' matched an empty path: it allowed TCP before
    [InlineData("to:\n        - operation:\n            methods: [\"*\"]")]
    [InlineData("to:\n        - operation:\n            ports: [5432]\n            methods: [GET]")]
    [InlineData("from:\n        - source:\n            requestPrincipals: [\"*\"]")]
    [InlineData("when:\n        - key: request.headers[x-user]\n          notValues: [\"guest\"]")] // an absent header passed notValues before
    public void An_allow_with_http_only_fields_allows_no_connection(string rule)
    {
        var snapshot = Compile(Doc("allow", $"  action: ALLOW\n  rules:\n    - {rule}\n"));

        var decision = Decide(snapshot, Connection());
        Assert.False(decision.Allowed);
        Assert.Equal(AuthorizationDecision.NoAllowPolicyMatched, decision.Reason);
    }

    [Fact]
    public void An_allow_on_identity_port_source_and_time_still_allows_a_connection()
    {
        var snapshot = Compile(Doc("allow", $$"""
              action: ALLOW
              rules:
                - from:
                    - source:
                        principals: ["{{Frontend}}"]
                  to:
                    - operation:
                        ports: [5432]
                  when:
                    - key: source.ip
                      values: ["10.0.0.0/8"]
                    - key: request.time
                      values: ["08:00-18:00"]
            """));

        Assert.True(Decide(snapshot, Connection(ip: "10.0.0.9")).Allowed);
        Assert.False(Decide(snapshot, Connection(ip: "10.0.0.9") with { Now = new DateTimeOffset(2025, 6, 4, 20, 0, 0, TimeSpan.Zero) }).Allowed);
        Assert.False(Decide(snapshot, Connection(Cart, ip: "10.0.0.9")).Allowed);
        Assert.False(Decide(snapshot, Connection(port: 6379, ip: "10.0.0.9")).Allowed);
    }

    [Fact]
    public void A_deny_with_only_http_fields_in_one_operation_matches_whatever_the_other_operations_say()
    {
        // Operations are alternatives: with the paths left out, the first matches every connection.
        var snapshot = WithAllowShop("deny", """
              action: DENY
              rules:
                - to:
                    - operation:
                        paths: ["/admin"]
                    - operation:
                        ports: [9999]
            """);
        Assert.False(Decide(snapshot, Connection(port: 5432)).Allowed);
    }

    [Fact]
    public void An_audit_with_paths_records_every_connection()
    {
        var snapshot = WithAllowShop("suggested", """
              action: AUDIT
              rules:
                - to:
                    - operation:
                        methods: [GET]
                        paths: ["/orders/{*}"]
            """);
        var audits = new RuleMatch[2];
        var decision = Decide(snapshot, Connection(), audits);
        Assert.True(decision.Allowed);
        Assert.Equal(1, decision.AuditCount);
        Assert.Equal(new RuleMatch("shop/suggested", 0), audits[0]);
        Assert.True(decision.Audit.Matched(0));
    }

    [Fact]
    public void The_same_snapshot_decides_requests_by_the_path_index_as_before()
    {
        // An indexed ALLOW with paths still allows its requests: the connection reading changes connections only.
        var snapshot = Compile(Doc("allow", $$"""
              action: ALLOW
              rules:
                - from:
                    - source:
                        principals: ["{{Frontend}}"]
                  to:
                    - operation:
                        paths: ["/orders/*"]
            """));
        Assert.True(Decide(snapshot, new Req(Frontend, Path: "/orders/1")).Allowed);
        Assert.False(Decide(snapshot, Connection()).Allowed);
    }

    [Fact]
    public void Http_only_fields_are_named_as_written_and_explained_by_action()
    {
        var rule = PolicyYaml.Load("t.yaml", Doc("p", """
              action: DENY
              rules:
                - from:
                    - source:
                        principals: ["*"]
                        requestPrincipals: ["*"]
                  to:
                    - operation:
                        ports: [80]
                        methods: [GET]
                        paths: ["/x"]
                  when:
                    - key: request.headers[x-a]
                      values: ["1"]
                    - key: source.ip
                      values: ["10.0.0.1"]
            """)).Documents.Single().Resource is AuthorizationPolicy policy ? policy.Spec.Rules[0] : throw new InvalidOperationException();

        Assert.Equal(["methods", "paths", "requestPrincipals", "when request.headers[x-a]"], ConnectionRules.HttpOnlyFields(rule));
        Assert.Null(ConnectionRules.ForConnection(rule, PolicyAction.Allow));
        var stripped = ConnectionRules.ForConnection(rule, PolicyAction.Deny)!;
        Assert.Empty(ConnectionRules.HttpOnlyFields(stripped));
        Assert.Equal([80], stripped.To[0].Ports.ToArray());
        Assert.Equal(["*"], stripped.From[0].Principals.ToArray());
        Assert.Equal("source.ip", Assert.Single(stripped.When).Key);
        Assert.Same(stripped, ConnectionRules.ForConnection(stripped, PolicyAction.Allow));

        Assert.Contains("allows no TCP or L4 connection", ConnectionRules.Explain(PolicyAction.Allow, ["paths"]), StringComparison.Ordinal);
        Assert.Contains("this DENY rule applies to every TCP or L4 connection", ConnectionRules.Explain(PolicyAction.Deny, ["paths"]), StringComparison.Ordinal);
    }
}
