using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.Policy.Tests;

/// <summary>Policy kinds as descriptors: the registry, the typed wire form, a kind added from outside, and YAML that breaks the reader.</summary>
public sealed class KindTests
{
    private static readonly string Examples = Path.Combine(AppContext.BaseDirectory, "examples");

    [Fact]
    public void Every_resource_of_the_reference_file_survives_its_wire_form_unchanged()
    {
        var documents = PolicyYaml.Load("reference.yaml", File.ReadAllText(Path.Combine(Examples, "reference.yaml"))).GetValidDocuments();
        Assert.Equal(PolicyKinds.Builtin.All.Select(k => k.Name).Order(), documents.Select(d => d.Resource.Kind).Distinct().Order());

        foreach (var resource in documents.Select(d => d.Resource))
        {
            Assert.True(PolicyKinds.Builtin.TryGet(resource.Kind, out var kind));
            var wire = kind.ToWire(resource);
            var back = kind.FromWire(wire);
            Assert.IsType(resource.GetType(), back);
            Assert.Equal(resource.Key, back.Key);
            Assert.Equal(Encoding.UTF8.GetString(wire), Encoding.UTF8.GetString(kind.ToWire(back)));
            Assert.Empty(PolicyValidator.Validate([back]));
        }
    }

    [Fact]
    public void The_wire_form_is_the_validated_model_written_canonically_not_the_yaml()
    {
        const string yaml = "apiVersion: security.ztm.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n# a comment\nspec:\n  rules: [{to: [{operation: {ports: [\"8080\"]}}]}]\n";
        var resource = PolicyYaml.Load("a.yaml", yaml).GetValidDocuments()[0].Resource;

        var wire = Encoding.UTF8.GetString(AuthorizationPolicyKind.Instance.ToWire(resource));

        // Defaults filled in (namespace, action), the port a number, the operator's formatting and comments gone.
        Assert.Equal(
            """{"apiVersion":"security.ztm.dev/v1","kind":"AuthorizationPolicy","metadata":{"name":"p","namespace":"default"},"spec":{"action":"ALLOW","rules":[{"to":[{"operation":{"ports":[8080]}}]}]}}""",
            wire);
    }

    [Fact]
    public void A_wire_form_the_kind_cannot_read_is_refused_with_a_reason()
    {
        var unit = Assert.Throws<FormatException>(() => RateLimitPolicyKind.Instance.FromWire(
            """{"apiVersion":"security.ztm.dev/v1","kind":"RateLimitPolicy","metadata":{"name":"r"},"spec":{"perCaller":{"requestsPerUnit":1,"unit":"fortnight"}}}"""u8));
        Assert.Contains("spec.perCaller.unit: 'fortnight' is not a unit", unit.Message, StringComparison.Ordinal);
        Assert.Throws<FormatException>(() => RateLimitPolicyKind.Instance.FromWire("null"u8));
        Assert.Throws<FormatException>(() => RateLimitPolicyKind.Instance.FromWire("{"u8));
        var other = AuthorizationPolicyKind.Instance.ToWire(new AuthorizationPolicy(new("a", "shop"), new(null, PolicyAction.Allow, [])));
        Assert.Contains("unknown kind 'AuthorizationPolicy'", Assert.Throws<FormatException>(() => RateLimitPolicyKind.Instance.FromWire(other)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("AuthorizationPolicy", "AuthorizationPolicy")]
    [InlineData("authorizationpolicy", "AuthorizationPolicy")]
    [InlineData("authorizationpolicies", "AuthorizationPolicy")]
    [InlineData("RATELIMITPOLICIES", "RateLimitPolicy")]
    [InlineData("peerauthentications", "PeerAuthentication")]
    [InlineData("requestauthentication", "RequestAuthentication")]
    public void Operators_may_type_a_kind_in_any_case_and_in_the_plural(string typed, string kind) =>
        Assert.Equal(kind, PolicyKinds.Builtin.Find(typed)?.Name);

    [Fact]
    public void Documents_name_their_kind_exactly()
    {
        Assert.False(PolicyKinds.Builtin.TryGet("authorizationpolicy", out _));
        Assert.Null(PolicyKinds.Builtin.Find("Policy"));
    }

    [Fact]
    public void A_kind_registered_from_outside_is_read_validated_and_sent_like_the_builtin_ones()
    {
        const string yaml = """
            apiVersion: security.ztm.dev/v1
            kind: Quota
            metadata: {name: q, namespace: shop}
            spec: {selector: {service: orders}, requests: "20"}
            ---
            apiVersion: security.ztm.dev/v1
            kind: Quota
            metadata: {name: bad, namespace: shop}
            spec: {requests: "0", extra: 1}
            """;
        var kinds = PolicyKinds.Builtin.With(QuotaKind.Instance);

        var result = PolicyYaml.Load("quota.yaml", yaml, kinds);

        Assert.Equal(
        [
            "quota.yaml#2 spec.extra: unknown field 'extra'; expected selector, requests",
            "quota.yaml#2 spec.requests: 0 must be at least 1",
        ], result.Errors.Select(e => e.ToString()));
        var quota = Assert.IsType<Quota>(result.Documents[0].Resource);
        Assert.True(quota.AppliesTo(new WorkloadRef("shop", "orders")));
        Assert.False(quota.AppliesTo(new WorkloadRef("shop", "payments")));
        Assert.Equal(20, ((Quota)QuotaKind.Instance.FromWire(QuotaKind.Instance.ToWire(quota))).Spec.Requests);

        // Without the registration the kind is unknown, and the error lists the kinds that are.
        var unknown = PolicyYaml.Load("quota.yaml", yaml);
        Assert.Contains("quota.yaml#1 kind: unknown kind 'Quota'; expected one of AuthorizationPolicy, RequestAuthentication, PeerAuthentication, RateLimitPolicy, ApiSpec, AnomalyPolicy",
            unknown.Errors.Select(e => e.ToString()));
    }

    [Fact]
    public void An_unclosed_flow_mapping_is_an_error_with_the_file_and_line_not_an_exception()
    {
        const string yaml = "apiVersion: security.ztm.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: shop\nspec: {}\n";

        var result = PolicyYaml.Load("zz-bad.yaml", yaml);

        var error = Assert.Single(result.Errors);
        Assert.StartsWith("zz-bad.yaml line ", error.ToString(), StringComparison.Ordinal);
        Assert.Equal("zz-bad.yaml line 3: invalid YAML: the parser stopped here; look for an unclosed '{', '[' or quote on this line or above", error.ToString());
        Assert.Empty(result.Documents);
    }

    [Theory]
    [InlineData("a: [1, 2\n")]
    [InlineData("a: {b: [c}\n")]
    [InlineData("- [\n")]
    [InlineData("a: 'unterminated\n")]
    [InlineData("a: \"\\xZZ\"\n")]
    [InlineData("? [a\n: b\n")]
    [InlineData("a: !!binary zz\n")]
    [InlineData("%YAML 9.9\n---\na: 1\n")]
    [InlineData("\t- tab\n")]
    public void Broken_yaml_of_any_shape_is_refused_with_a_reason(string yaml)
    {
        var result = PolicyYaml.Load("broken.yaml", yaml);

        Assert.False(result.IsValid);
        Assert.All(result.Errors, e => Assert.StartsWith("broken.yaml", e.ToString(), StringComparison.Ordinal));
    }

    [Fact]
    public void Each_document_keeps_its_own_text()
    {
        var yaml = PolicyTestSupport.Doc("one", "  action: ALLOW\n") + "---\n" + PolicyTestSupport.Doc("two", "  action: DENY\n");

        var documents = PolicyYaml.Load("two.yaml", yaml).GetValidDocuments();

        Assert.Contains("name: one", documents[0].Text, StringComparison.Ordinal);
        Assert.DoesNotContain("name: two", documents[0].Text, StringComparison.Ordinal);
        Assert.Contains("action: DENY", documents[1].Text, StringComparison.Ordinal);
        Assert.Equal(documents[1].Resource.Key, PolicyYaml.Load("again.yaml", documents[1].Text!).GetValidDocuments()[0].Resource.Key);
    }
}

/// <summary>A kind that exists only in this test: a folder's worth of code plus one registration (<see cref="PolicyKinds.With"/>).</summary>
public sealed record Quota(ResourceMetadata Metadata, QuotaSpec Spec) : PolicyResource(Metadata)
{
    public override string Kind => "Quota";

    public override WorkloadSelector? Selector => Spec.Selector;
}

public sealed record QuotaSpec(WorkloadSelector? Selector, int Requests);

public sealed class QuotaKind : PolicyKind<Quota>
{
    public static readonly QuotaKind Instance = new();

    private QuotaKind()
    {
    }

    public override string Name => "Quota";

    protected override Quota ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader)
    {
        if (spec is null)
        {
            return new Quota(metadata, new QuotaSpec(null, 0));
        }
        reader.Keys(spec, "spec", "selector", "requests");
        return new Quota(metadata, new QuotaSpec(reader.Selector(spec), reader.Number(SpecReader.Child(spec, "requests"), "spec.requests") ?? 0));
    }

    protected override void WriteSpec(Quota resource, Utf8JsonWriter json)
    {
        ResourceWriter.Selector(json, resource.Spec.Selector);
        json.WriteNumber("requests", resource.Spec.Requests);
    }

    protected override void Validate(Quota resource, ErrorSink errors)
    {
        if (resource.Spec.Requests < 1)
        {
            errors.Add("spec.requests", $"{resource.Spec.Requests} must be at least 1");
        }
    }
}
