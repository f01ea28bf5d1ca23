using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.Policy.Tests;

public sealed class ValidationTests
{
    private static string[] Errors(string yaml, string source = "policies.yaml") =>
        [.. PolicyYaml.Load(source, yaml).Errors.Select(e => e.ToString())];

    [Fact]
    public void Every_error_in_a_set_is_reported_at_once_with_its_path()
    {
        const string yaml = """
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata:
              name: ok
              namespace: shop
            spec:
              rules:
                - {}
            ---
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata:
              namespace: shop
            spec:
              action: PERMIT
              rules:
                - from:
                    - source:
                        principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
                    - source:
                        principals: ["spiffe://Bad/ns/x", "spiffe://cluster.local/ns/*/sa/x"]
                  to:
                    - operation:
                        methods: [get, FETCH]
                        paths: ["orders", "/a/*/b", "/x?y"]
                        ports: [0, 70000]
                  when:
                    - key: source.ip
                      values: ["10.0.0.0/33", "10.0.0.1/8", "not-an-ip"]
                    - key: request.time
                      values: ["9-17", "25:00-26:00"]
                      timeZone: Mars/Olympus
                      days: [Funday]
                    - key: request.body
                      values: [x]
                  extra: true
            """;
        var errors = Errors(yaml);
        string[] expected =
        [
            "policies.yaml#2 spec.action: 'PERMIT' is not an action: use ALLOW, DENY or AUDIT",
            "policies.yaml#2 spec.rules[0].extra: unknown field 'extra'; expected from, to, when",
            "policies.yaml#2 metadata.name: a name is required",
            "policies.yaml#2 spec.rules[0].from[1].source.principals[0]: 'spiffe://Bad/ns/x' is not a SPIFFE ID: the trust domain must be lowercase",
            "policies.yaml#2 spec.rules[0].from[1].source.principals[1]: 'spiffe://cluster.local/ns/*/sa/x' is not a SPIFFE ID: '*' is only allowed alone or as a trailing '/*'",
            "policies.yaml#2 spec.rules[0].to[0].operation.methods[0]: 'get' must be upper-case: 'GET'",
            "policies.yaml#2 spec.rules[0].to[0].operation.methods[1]: 'FETCH' is not an HTTP method; use one of GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE or '*'",
            "policies.yaml#2 spec.rules[0].to[0].operation.paths[0]: 'orders' must start with '/' (or '*' for a suffix pattern)",
            "policies.yaml#2 spec.rules[0].to[0].operation.paths[1]: '/a/*/b' is not a path pattern: use an exact path '/a/b', a prefix '/a/*', a suffix '*.json', a template '/a/{*}/c' or '/a/{**}', or '*'",
            "policies.yaml#2 spec.rules[0].to[0].operation.paths[2]: '/x?y' contains '?'; paths are matched without the query string or fragment",
            "policies.yaml#2 spec.rules[0].to[0].operation.ports[0]: 0 is not a port: it must be 1 to 65535",
            "policies.yaml#2 spec.rules[0].to[0].operation.ports[1]: 70000 is not a port: it must be 1 to 65535",
            "policies.yaml#2 spec.rules[0].when[0].values[0]: '10.0.0.0/33' has an invalid prefix length; it must be 0 to 32",
            "policies.yaml#2 spec.rules[0].when[0].values[1]: '10.0.0.1/8' has host bits set after the /8 prefix; write the network address",
            "policies.yaml#2 spec.rules[0].when[0].values[2]: 'not-an-ip' is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.168.1.7, fd00::/8)",
            "policies.yaml#2 spec.rules[0].when[1].values[0]: '9-17' is not a time window: use 'HH:mm-HH:mm' (24-hour, e.g. '09:00-17:00' or '22:00-06:00' across midnight)",
            "policies.yaml#2 spec.rules[0].when[1].values[1]: '25:00-26:00' is not a time window: use 'HH:mm-HH:mm' (24-hour, e.g. '09:00-17:00' or '22:00-06:00' across midnight)",
            "policies.yaml#2 spec.rules[0].when[1].timeZone: 'Mars/Olympus' is not a known IANA time zone (e.g. 'Europe/Paris', 'UTC')",
            "policies.yaml#2 spec.rules[0].when[1].days[0]: 'Funday' is not a day: use Mon, Tue, Wed, Thu, Fri, Sat or Sun",
            "policies.yaml#2 spec.rules[0].when[2].key: 'request.body' is not a supported key: use request.headers[<name>], request.auth.claims[<name>], source.ip or request.time",
        ];
        Assert.Equal(expected, errors);
    }

    [Fact]
    public void Unknown_kind_api_version_and_fields_are_refused()
    {
        const string yaml = """
            apiVersion: security.ztm.dev/v2
            kind: AuthorizationPolicy
            metadata: {name: a, namespace: shop, uid: x}
            spec:
              Action: ALLOW
              selector: {service: orders, app: orders}
            ---
            apiVersion: security.ztm.dev/v1
            kind: NetworkPolicy
            metadata: {name: b}
            spec: {}
            """;
        Assert.Equal(
        [
            "policies.yaml#1 apiVersion: unknown apiVersion 'security.ztm.dev/v2'; expected 'security.ztm.dev/v1'",
            "policies.yaml#1 metadata.uid: unknown field 'uid'; expected name, namespace, labels, annotations",
            "policies.yaml#1 spec.Action: unknown field 'Action'; did you mean 'action'?",
            "policies.yaml#1 spec.selector.app: unknown field 'app'; expected service",
            "policies.yaml#2 kind: unknown kind 'NetworkPolicy'; expected one of AuthorizationPolicy, RequestAuthentication, PeerAuthentication, RateLimitPolicy, ApiSpec, AnomalyPolicy",
        ], Errors(yaml));
    }

    [Fact]
    public void Duplicates_across_files_are_refused_and_name_the_first_definition()
    {
        const string doc = "apiVersion: security.ztm.dev/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mode: STRICT}\n";
        var result = PolicyYaml.Load([new("a.yaml", doc), new("b.yaml", "---\n" + doc + "---\n" + doc.Replace("PeerAuthentication", "AuthorizationPolicy", StringComparison.Ordinal).Replace("spec: {mode: STRICT}", "spec: {}", StringComparison.Ordinal))]);
        Assert.Equal(["b.yaml#1 metadata.name: duplicate PeerAuthentication 'shop/default': already defined in a.yaml#1"], result.Errors.Select(e => e.ToString()));
        Assert.Equal(3, result.Documents.Length); // same name, other kind: no conflict
    }

    [Fact]
    public void Invalid_yaml_names_the_line()
    {
        var errors = Errors("apiVersion: security.ztm.dev/v1\nkind: [unclosed\n");
        var error = Assert.Single(errors);
        Assert.StartsWith("policies.yaml line 3, column 1: invalid YAML:", error);
    }

    [Fact]
    public void Wrong_types_are_reported()
    {
        const string yaml = """
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata: {name: a, namespace: shop}
            spec:
              rules:
                - to: {operation: {paths: [/a]}}
                  from:
                    - source: "spiffe://cluster.local/ns/shop/sa/x"
                - when:
                    - key: [a]
                      values: x
            """;
        Assert.Equal(
        [
            "policies.yaml#1 spec.rules[0].from[0].source: expected a mapping (key: value)",
            "policies.yaml#1 spec.rules[0].to: expected a list",
            "policies.yaml#1 spec.rules[1].when[0].key: expected a single value, not a list or mapping",
            "policies.yaml#1 spec.rules[1].when[0].values: expected a list",
            "policies.yaml#1 spec.rules[1].when[0]: a condition needs values or notValues",
        ], Errors(yaml));
    }

    [Fact]
    public void Huge_files_and_anchors_are_refused()
    {
        var huge = "# " + new string('x', PolicyYaml.MaxFileBytes);
        Assert.Contains("at most 1,048,576 bytes (1 MiB)", Assert.Single(Errors(huge)));

        const string bomb = """
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata: {name: a, namespace: shop}
            spec:
              rules:
                - to: &ops [{operation: {paths: [/a]}}]
                - to: *ops
            """;
        Assert.Contains("policies.yaml#1 spec.rules[0].to: YAML anchors and aliases are not supported in policy files", Errors(bomb));
    }

    [Fact]
    public void Too_many_rules_are_refused()
    {
        var rules = string.Concat(Enumerable.Repeat("    - {}\n", PolicyValidator.MaxRules + 1));
        var errors = Errors($"apiVersion: security.ztm.dev/v1\nkind: AuthorizationPolicy\nmetadata: {{name: a}}\nspec:\n  rules:\n{rules}");
        Assert.Equal([$"the set has {PolicyValidator.MaxRules + 1} authorization rules; at most {PolicyValidator.MaxRules} are allowed"], errors);
    }

    [Fact]
    public void Other_kinds_are_validated()
    {
        const string yaml = """
            apiVersion: security.ztm.dev/v1
            kind: RequestAuthentication
            metadata: {name: jwt, namespace: shop}
            spec:
              jwtRules:
                - issuer: https://a.example
                  jwksUri: http://a.example/keys
                - issuer: https://a.example
                  jwksUri: https://a.example/keys
                  jwks: '{"keys":[{}]}'
                - issuer: https://b.example
                  jwks: '{"keys":'
                - audiences: [x]
            ---
            apiVersion: security.ztm.dev/v1
            kind: PeerAuthentication
            metadata: {name: pa, namespace: Shop}
            spec:
              mode: LOOSE
              portLevelMtls:
                - {port: 8080, mode: PERMISSIVE}
                - {port: 8080, mode: STRICT}
            ---
            apiVersion: security.ztm.dev/v1
            kind: RateLimitPolicy
            metadata: {name: rl, namespace: shop}
            spec:
              perCaller: {requestsPerUnit: 0, unit: day}
              routes:
                - {path: "/a/*/b", limit: {requestsPerUnit: 5}}
              overrides:
                - principal: spiffe://cluster.local/ns/shop/sa/orders/*
                  limit: {requestsPerUnit: 5, burst: -1}
            """;
        var errors = Errors(yaml);
        Assert.Contains("policies.yaml#1 spec.jwtRules[0].jwksUri: 'http://a.example/keys' must be an absolute https URL (http only on loopback)", errors);
        Assert.Contains("policies.yaml#1 spec.jwtRules[1].issuer: issuer 'https://a.example' appears twice; one rule per issuer", errors);
        Assert.Contains("policies.yaml#1 spec.jwtRules[1]: give either jwksUri or jwks, not both", errors);
        Assert.Contains(errors, e => e.StartsWith("policies.yaml#1 spec.jwtRules[2].jwks: the inline JWKS is not valid JSON", StringComparison.Ordinal));
        Assert.Contains("policies.yaml#1 spec.jwtRules[3].issuer: an issuer is required", errors);
        Assert.Contains("policies.yaml#1 spec.jwtRules[3]: one of jwksUri or jwks is required", errors);
        Assert.Contains("policies.yaml#2 spec.mode: 'LOOSE' is not a mode: use STRICT or PERMISSIVE", errors);
        Assert.Contains("policies.yaml#2 metadata.namespace: 'Shop' is not a valid namespace: use lower-case letters, digits and '-', at most 63 characters", errors);
        Assert.Contains("policies.yaml#2 spec.portLevelMtls[1].port: port 8080 appears twice", errors);
        Assert.Contains("policies.yaml#2 spec.portLevelMtls: portLevelMtls needs a selector: ports are those of one workload", errors);
        Assert.Contains("policies.yaml#3 spec.perCaller.unit: 'day' is not a unit: use second, minute or hour", errors);
        Assert.Contains("policies.yaml#3 spec.perCaller.requestsPerUnit: 0 must be at least 1", errors);
        Assert.Contains(errors, e => e.StartsWith("policies.yaml#3 spec.routes[0].path: '/a/*/b' is not a path pattern", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies.yaml#3 spec.overrides[0].principal: 'spiffe://cluster.local/ns/shop/sa/orders/*' is not a SPIFFE ID", StringComparison.Ordinal));
        Assert.Contains("policies.yaml#3 spec.overrides[0].limit.burst: -1 must not be negative (0 means the same as requestsPerUnit)", errors);
        Assert.Equal(15, errors.Length);
    }

    [Fact]
    public void The_compiler_refuses_invalid_policies_with_every_error()
    {
        var bad = new AuthorizationPolicy(
            new ResourceMetadata("bad", "shop"),
            new AuthorizationPolicySpec(null, PolicyAction.Allow,
                [new AuthorizationRule([new RuleSource(["spiffe://X"], [], [])], [new RuleOperation(["get"], [], [])], [])]));
        var e = Assert.Throws<PolicyValidationException>(() => PolicyCompiler.Compile("v", new WorkloadRef("shop", "orders"), [bad]));
        Assert.Equal(2, e.Errors.Count);
        Assert.Equal("AuthorizationPolicy/shop/bad spec.rules[0].from[0].source.principals[0]", e.Errors[0].Location);
        Assert.Contains("(2 errors)", e.Message, StringComparison.Ordinal);
    }
    [Fact]
    public void Bad_path_templates_are_refused_with_the_field_and_the_reason()
    {
        const string yaml = """
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata:
              name: t
              namespace: shop
            spec:
              rules:
                - to:
                    - operation:
                        paths: ["/files/{**}/x", "/users/{id}", "/a/b{*}", "orders/{*}", "/a/{*}/*", "/ok/{*}/lines", "/ok/{**}"]
            """;
        Assert.Equal(
        [
            "policies.yaml#1 spec.rules[0].to[0].operation.paths[0]: '/files/{**}/x': '{**}' must be the last segment (it matches one or more segments to the end of the path)",
            "policies.yaml#1 spec.rules[0].to[0].operation.paths[1]: '/users/{id}': segment '{id}' is not supported in a template: a segment is literal text (no '{', '}' or '*'), '{*}' (one segment) or '{**}' (one or more, last)",
            "policies.yaml#1 spec.rules[0].to[0].operation.paths[2]: '/a/b{*}': segment 'b{*}' is not supported in a template: a segment is literal text (no '{', '}' or '*'), '{*}' (one segment) or '{**}' (one or more, last)",
            "policies.yaml#1 spec.rules[0].to[0].operation.paths[3]: 'orders/{*}' must start with '/' to be a path template",
            "policies.yaml#1 spec.rules[0].to[0].operation.paths[4]: '/a/{*}/*': segment '*' is not supported in a template: a segment is literal text (no '{', '}' or '*'), '{*}' (one segment) or '{**}' (one or more, last)",
        ], Errors(yaml));
    }
}
