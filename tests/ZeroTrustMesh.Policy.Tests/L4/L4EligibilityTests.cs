using ZeroTrustMesh.Policy.L4;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Yaml;
using static ZeroTrustMesh.Policy.Tests.PolicyTestSupport;

namespace ZeroTrustMesh.Policy.Tests.L4;

/// <summary>Which ports are L4: each attribute that forces L7, where it forces it, and what never does.</summary>
public sealed class L4EligibilityTests
{
    private static PolicyResource[] Load(string yaml)
    {
        var result = PolicyYaml.Load("policies.yaml", yaml);
        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        return [.. result.Documents.Select(d => d.Resource)];
    }

    private static PortModes Of(string yaml, bool restrictions = false) => L4Eligibility.Of(true, Load(yaml), restrictions);

    /// <summary>The documents of one kind from the shipped reference example (every field of every kind).</summary>
    private static PolicyResource[] Reference(string kind) =>
        [.. Load(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "examples", "reference.yaml"))).Where(r => r.Kind == kind)];

    private const string FromFrontend = "  rules:\n    - from: [{source: {principals: [\"spiffe://cluster.local/ns/shop/sa/frontend\"]}}]\n";

    [Fact]
    public void Off_makes_every_port_L7_whatever_the_policy()
    {
        var modes = L4Eligibility.Of(false, Load(Doc("allow", "  action: ALLOW\n" + FromFrontend)), hasCallerRestrictions: false);

        Assert.False(modes.IsL4(8080));
        Assert.Equal("L4 mode is off", modes.L7Reason(8080));
        Assert.Same(PortModes.Off, modes);
    }

    [Fact]
    public void No_policy_at_all_is_L4_default_deny_holds_per_connection()
    {
        var modes = L4Eligibility.Of(true, [], hasCallerRestrictions: false);

        Assert.True(modes.IsL4(8080));
        Assert.Equal("every port L4", modes.ToString());
    }

    [Theory]
    [InlineData("principals", "  rules:\n    - from: [{source: {principals: [\"spiffe://cluster.local/ns/shop/sa/frontend\"]}}]\n")]
    [InlineData("namespaces", "  rules:\n    - from: [{source: {namespaces: [\"shop\"]}}]\n")]
    [InlineData("ports", "  rules:\n    - to: [{operation: {ports: [8080]}}]\n")]
    [InlineData("source.ip", "  rules:\n    - when: [{key: source.ip, values: [\"10.0.0.0/8\"]}]\n")]
    [InlineData("source.ip notValues", "  rules:\n    - when: [{key: source.ip, notValues: [\"10.9.0.0/16\"]}]\n")]
    [InlineData("no rules", "  rules: []\n")]
    public void L4_attributes_keep_every_port_L4(string attribute, string rules)
    {
        var modes = Of(Doc("p", "  action: ALLOW\n" + rules) + "---\n" + Doc("d", "  action: DENY\n" + rules));

        Assert.True(modes.IsL4(8080), attribute);
        Assert.True(modes.IsL4(9090), attribute);
    }

    [Theory]
    [InlineData("methods", "  rules:\n    - to: [{operation: {methods: [\"GET\"]}}]\n", "'methods' needs the HTTP request")]
    [InlineData("paths", "  rules:\n    - to: [{operation: {paths: [\"/orders/*\"]}}]\n", "'paths' needs the HTTP request")]
    [InlineData("method *", "  rules:\n    - to: [{operation: {methods: [\"*\"]}}]\n", "'methods' needs the HTTP request")]
    [InlineData("requestPrincipals", "  rules:\n    - from: [{source: {requestPrincipals: [\"*\"]}}]\n", "requestPrincipals needs the request's JWT")]
    [InlineData("header", "  rules:\n    - when: [{key: \"request.headers[x-tenant]\", values: [\"a\"]}]\n", "'request.headers[x-tenant]' is a request attribute")]
    [InlineData("claim", "  rules:\n    - when: [{key: \"request.auth.claims[scope]\", values: [\"read\"]}]\n", "'request.auth.claims[scope]' is a request attribute")]
    [InlineData("time", "  rules:\n    - when: [{key: request.time, values: [\"09:00-17:00\"]}]\n", "'request.time' is a request attribute")]
    public void An_L7_attribute_makes_every_port_L7_and_says_which(string attribute, string rules, string reason)
    {
        foreach (var action in new[] { "ALLOW", "DENY" })
        {
            var modes = Of(Doc("p", $"  action: {action}\n" + rules));

            Assert.False(modes.IsL4(8080), $"{attribute} ({action})");
            Assert.Equal($"AuthorizationPolicy 'shop/p' rule 0: {reason}", modes.AllPortsL7);
        }
    }

    [Fact]
    public void An_L7_attribute_limited_to_a_port_makes_only_that_port_L7()
    {
        var modes = Of(Doc("admin-get", "  action: ALLOW\n  rules:\n    - to: [{operation: {methods: [\"GET\"], ports: [9090]}}, {operation: {ports: [7070]}}]\n"));

        Assert.True(modes.IsL4(8080));
        Assert.True(modes.IsL4(7070)); // the other operation of the rule names only a port
        Assert.False(modes.IsL4(9090));
        Assert.Equal("AuthorizationPolicy 'shop/admin-get' rule 0: 'methods' needs the HTTP request", modes.L7Reason(9090));
    }

    [Fact]
    public void A_when_condition_forces_L7_on_every_port_the_rule_applies_to()
    {
        var modes = Of(Doc("p", "  action: ALLOW\n  rules:\n    - to: [{operation: {ports: [9090, 9091]}}]\n      when: [{key: \"request.headers[x-a]\", values: [\"1\"]}]\n"));

        Assert.True(modes.IsL4(8080));
        Assert.False(modes.IsL4(9090));
        Assert.False(modes.IsL4(9091));
    }

    [Fact]
    public void Audit_records_requests_so_its_ports_are_L7()
    {
        var modes = Of(Doc("watch", "  action: AUDIT\n" + FromFrontend));

        Assert.False(modes.IsL4(8080));
        Assert.Equal("AuthorizationPolicy 'shop/watch' rule 0: AUDIT records every request", modes.AllPortsL7);
    }

    [Theory]
    [InlineData("RequestAuthentication")]
    [InlineData("RateLimitPolicy")]
    [InlineData("ApiSpec")]
    [InlineData("AnomalyPolicy")]
    public void Kinds_that_work_per_request_make_every_port_L7(string kind)
    {
        var resources = Reference(kind);
        Assert.NotEmpty(resources);

        var modes = L4Eligibility.Of(true, resources, hasCallerRestrictions: false);

        Assert.False(modes.IsL4(8080));
        Assert.StartsWith($"{kind} '", modes.AllPortsL7, StringComparison.Ordinal);
        Assert.EndsWith("applies per request", modes.AllPortsL7, StringComparison.Ordinal);
    }

    [Fact]
    public void PeerAuthentication_never_forces_L7_plaintext_callers_always_get_HTTP()
    {
        var resources = Reference("PeerAuthentication");
        Assert.NotEmpty(resources);

        Assert.True(L4Eligibility.Of(true, resources, hasCallerRestrictions: false).IsL4(9090));
    }

    [Fact]
    public void Caller_restrictions_from_anomaly_response_make_every_port_L7()
    {
        var modes = Of(Doc("allow", "  action: ALLOW\n" + FromFrontend), restrictions: true);

        Assert.False(modes.IsL4(8080));
        Assert.Equal("caller restrictions from anomaly response apply per request", modes.AllPortsL7);
    }

    [Fact]
    public void One_L7_policy_among_L4_ones_decides_and_the_summary_names_it()
    {
        var modes = Of(Doc("a-allow", "  action: ALLOW\n" + FromFrontend) + "---\n"
            + Doc("b-admin", "  action: DENY\n  rules:\n    - to: [{operation: {paths: [\"/admin/*\"], ports: [9090]}}]\n"));

        Assert.True(modes.IsL4(8080));
        Assert.False(modes.IsL4(9090));
        Assert.Equal("L4 except 9090 (AuthorizationPolicy 'shop/b-admin' rule 0: 'paths' needs the HTTP request)", modes.ToString());
    }
}
