using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.Policy.Tests;

/// <summary>PeerAuthentication (STRICT / PERMISSIVE, per workload and port) and RequestAuthentication's forwardOriginalToken, from YAML.</summary>
public sealed class PeerAuthenticationTests
{
    private static readonly WorkloadRef Orders = new("shop", "orders");

    private static PolicyResource[] Load(string yaml)
    {
        var result = PolicyYaml.Load("policies.yaml", yaml);
        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        return [.. result.Documents.Select(d => d.Resource)];
    }

    private static string[] Errors(string yaml) => [.. PolicyYaml.Load("policies.yaml", yaml).Errors.Select(e => e.ToString())];

    private static PeerAuthenticationPolicy Compile(string yaml) =>
        PeerAuthenticationPolicy.Compile(Orders, Load(yaml).OfType<PeerAuthentication>());

    private static string Peer(string name, string spec) => $$"""
        apiVersion: security.ztm.dev/v1
        kind: PeerAuthentication
        metadata: {name: {{name}}, namespace: shop}
        spec: {{spec}}

        """;

    [Fact]
    public void No_peer_authentication_is_strict_and_accepts_no_plaintext()
    {
        var policy = PeerAuthenticationPolicy.Compile(Orders, []);

        Assert.Equal(MtlsMode.Strict, policy.Mode);
        Assert.False(policy.AcceptsPlaintext);
        Assert.Equal(MtlsMode.Strict, policy.ModeFor(8080));
        Assert.Null(policy.Source);
    }

    [Fact]
    public void A_namespace_wide_permissive_mode_applies_to_every_port()
    {
        var policy = Compile(Peer("default", "{mode: PERMISSIVE}"));

        Assert.True(policy.AcceptsPlaintext);
        Assert.Equal(MtlsMode.Permissive, policy.ModeFor(8080));
        Assert.Equal("shop/default", policy.Source);
    }

    [Fact]
    public void A_missing_mode_or_spec_means_strict()
    {
        Assert.False(Compile(Peer("default", "{}")).AcceptsPlaintext);
        Assert.False(Compile("apiVersion: security.ztm.dev/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\n").AcceptsPlaintext);
    }

    [Fact]
    public void The_workloads_own_resource_wins_over_the_namespace_wide_one_and_port_modes_override_it()
    {
        var policy = Compile(
            Peer("a-namespace-wide", "{mode: PERMISSIVE}") + "---\n" +
            Peer("orders-mtls", "{selector: {service: orders}, mode: STRICT, portLevelMtls: [{port: 9090, mode: PERMISSIVE}]}") + "---\n" +
            Peer("payments-mtls", "{selector: {service: payments}, mode: PERMISSIVE}"));

        Assert.Equal("shop/orders-mtls", policy.Source);
        Assert.Equal(MtlsMode.Strict, policy.Mode);
        Assert.Equal(MtlsMode.Strict, policy.ModeFor(8080));
        Assert.Equal(MtlsMode.Permissive, policy.ModeFor(9090));
        Assert.True(policy.AcceptsPlaintext); // port 9090 does
        Assert.Equal("STRICT, port 9090 PERMISSIVE", policy.ToString());
    }

    [Fact]
    public void A_port_can_be_strict_in_a_permissive_workload()
    {
        var policy = Compile(Peer("orders", "{selector: {service: orders}, mode: PERMISSIVE, portLevelMtls: [{port: 8443, mode: STRICT}]}"));

        Assert.Equal(MtlsMode.Permissive, policy.ModeFor(8080));
        Assert.Equal(MtlsMode.Strict, policy.ModeFor(8443));
    }

    [Fact]
    public void Among_resources_of_one_level_the_first_by_name_wins_and_other_namespaces_never_apply()
    {
        var policy = Compile(
            Peer("b", "{mode: PERMISSIVE}") + "---\n" + Peer("a", "{mode: STRICT}") +
            "---\napiVersion: security.ztm.dev/v1\nkind: PeerAuthentication\nmetadata: {name: all, namespace: other}\nspec: {mode: PERMISSIVE}\n");

        Assert.Equal("shop/a", policy.Source);
        Assert.False(policy.AcceptsPlaintext);
    }

    [Fact]
    public void Bad_modes_ports_and_port_levels_without_a_selector_are_refused_with_their_paths()
    {
        var errors = Errors(
            Peer("a", "{mode: permissive}") + "---\n" +
            Peer("b", "{selector: {service: orders}, portLevelMtls: [{port: 0, mode: PERMISSIVE}, {port: 80}, {mode: STRICT}, {port: 81, mode: STRICT, extra: 1}]}") + "---\n" +
            Peer("c", "{portLevelMtls: [{port: 80, mode: PERMISSIVE}]}"));

        Assert.Contains("policies.yaml#1 spec.mode: 'permissive' is not a mode: use STRICT or PERMISSIVE", errors);
        Assert.Contains("policies.yaml#2 spec.portLevelMtls[0].port: 0 is not a port: it must be 1 to 65535", errors);
        Assert.Contains("policies.yaml#2 spec.portLevelMtls[1].mode: a mode is required: STRICT or PERMISSIVE", errors);
        Assert.Contains("policies.yaml#2 spec.portLevelMtls[2].port: a port is required", errors);
        Assert.Contains(errors, e => e.StartsWith("policies.yaml#2 spec.portLevelMtls[3].extra: unknown field 'extra'", StringComparison.Ordinal));
        Assert.Contains("policies.yaml#3 spec.portLevelMtls: portLevelMtls needs a selector: ports are those of one workload", errors);
        Assert.Contains("policies.yaml#2 spec.portLevelMtls[2].port: 0 is not a port: it must be 1 to 65535", errors); // the missing one
        Assert.True(errors.Length == 7, string.Join("\n", errors));
    }

    private const string Jwt = """
        apiVersion: security.ztm.dev/v1
        kind: RequestAuthentication
        metadata: {name: jwt, namespace: shop}
        spec:
          jwtRules:
            - issuer: https://a.example
              jwks: '{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
        """;

    [Fact]
    public void Forward_original_token_is_false_unless_set_to_true()
    {
        var rules = Load(Jwt + "\n    - issuer: https://b.example\n      jwksUri: https://b.example/keys\n      forwardOriginalToken: true\n"
            + "    - issuer: https://c.example\n      jwksUri: https://c.example/keys\n      forwardOriginalToken: false\n")
            .OfType<RequestAuthentication>().Single().Spec.JwtRules;

        Assert.Equal([false, true, false], rules.Select(r => r.ForwardOriginalToken));
    }

    [Fact]
    public void Forward_original_token_must_be_a_boolean()
    {
        Assert.Equal(
            ["policies.yaml#1 spec.jwtRules[0].forwardOriginalToken: 'yes' is not a boolean: use true or false"],
            Errors(Jwt + "\n      forwardOriginalToken: yes\n"));
    }
}
