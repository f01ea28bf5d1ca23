using System.Text.Json.Nodes;
using ZeroTrustMesh.Chart.Tests.Infrastructure;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.Chart.Tests;

public sealed class ExamplePolicyTests
{
    private static IEnumerable<string> ExampleFiles() =>
        Directory.GetFiles(Path.Combine(Helm.RepoRoot, "examples", "policies"), "*.yaml").Order(StringComparer.Ordinal);

    [HelmFact]
    public async Task Every_example_policy_validates_against_its_crd()
    {
        var crds = await PolicyCrds.FromDefaultRenderAsync();
        var failures = new List<string>();
        var count = 0;
        foreach (var file in ExampleFiles())
        {
            var documents = Yaml.ToJson(await File.ReadAllTextAsync(file));
            for (var i = 0; i < documents.Count; i++)
            {
                count++;
                failures.AddRange(crds.Validate(documents[i]!).Select(e => $"{Path.GetFileName(file)}#{i + 1} ({documents[i]!["kind"]} {documents[i]!["metadata"]?["name"]}): {e}"));
            }
        }
        Assert.True(count >= 10, $"only {count} example documents found");
        Assert.True(failures.Count == 0, Text.Lines(failures));
    }

    [HelmFact]
    public async Task The_canonical_wire_form_of_every_example_validates_against_its_crd()
    {
        // What the control plane writes for a policy (and will write back to the cluster) must fit the CRD too.
        var crds = await PolicyCrds.FromDefaultRenderAsync();
        var failures = new List<string>();
        foreach (var file in ExampleFiles())
        {
            var set = PolicyYaml.Load(Path.GetFileName(file), await File.ReadAllTextAsync(file));
            Assert.True(set.IsValid, string.Join('\n', set.Errors));
            foreach (var document in set.Documents)
            {
                PolicyKinds.Builtin.TryGet(document.Resource.Kind, out var kind);
                var wire = JsonNode.Parse(kind!.ToWire(document.Resource))!;
                failures.AddRange(crds.Validate(wire).Select(e => $"{document.Location}: {e}"));
            }
        }
        Assert.True(failures.Count == 0, Text.Lines(failures));
    }

    [HelmTheory]
    [InlineData("AuthorizationPolicy", "action: ALLOW\n  rule: []", "/spec/rule additionalProperties")]
    [InlineData("AuthorizationPolicy", "action: allow", "/spec/action enum")]
    [InlineData("AuthorizationPolicy", "rules:\n    - to:\n        - operation: {ports: [\"8080\"]}", "/spec/rules/0/to/0/operation/ports/0 type")]
    [InlineData("AuthorizationPolicy", "rules:\n    - to:\n        - operation: {ports: [70000]}", "/spec/rules/0/to/0/operation/ports/0 maximum")]
    [InlineData("AuthorizationPolicy", "rules:\n    - from:\n        - principals: [\"*\"]", "/spec/rules/0/from/0 required")]
    [InlineData("AuthorizationPolicy", "selector: {}", "/spec/selector required")]
    [InlineData("PeerAuthentication", "mode: DISABLE", "/spec/mode enum")]
    [InlineData("PeerAuthentication", "portLevelMtls:\n    - {port: 9090}", "/spec/portLevelMtls/0 required")]
    [InlineData("RequestAuthentication", "jwtRules:\n    - {issuer: a, jwksUri: 'https://a/jwks', jwks: '{}'}", "/spec/jwtRules/0 invalid")]
    [InlineData("RequestAuthentication", "jwtRules:\n    - {issuer: a}", "/spec/jwtRules/0 oneOf")]
    [InlineData("RequestAuthentication", "jwtRules: []", "/spec/jwtRules minItems")]
    [InlineData("RequestAuthentication", "jwtRules:\n    - {issuer: a, jwks: '{}', forwardOriginalToken: \"yes\"}", "/spec/jwtRules/0/forwardOriginalToken type")]
    [InlineData("RateLimitPolicy", "selector: {service: a}", "/spec anyOf")]
    [InlineData("RateLimitPolicy", "perCaller: {requestsPerUnit: 0}", "/spec/perCaller/requestsPerUnit minimum")]
    [InlineData("RateLimitPolicy", "perCaller: {requestsPerUnit: 5, unit: day}", "/spec/perCaller/unit enum")]
    [InlineData("RateLimitPolicy", "routes:\n    - {path: /a}", "/spec/routes/0 required")]
    public async Task A_policy_of_the_wrong_shape_is_refused_by_its_crd(string kind, string spec, string expected)
    {
        var crds = await PolicyCrds.FromDefaultRenderAsync();
        var document = Yaml.ToJsonSingle($"apiVersion: security.ztm.dev/v1\nkind: {kind}\nmetadata: {{name: bad, namespace: shop}}\nspec:\n  {spec}\n")!;
        var errors = crds.Validate(document);
        var (location, fragment) = (expected.Split(' ')[0], expected[(expected.IndexOf(' ', StringComparison.Ordinal) + 1)..]);
        Assert.True(errors.Any(e => e.StartsWith(location + ": ", StringComparison.Ordinal) && e.Contains(fragment, StringComparison.Ordinal)),
            $"expected an error at {location} with '{fragment}':\n{Text.Lines(errors)}");
    }

    [HelmFact]
    public async Task A_status_written_by_the_control_plane_fits_the_crd()
    {
        var crds = await PolicyCrds.FromDefaultRenderAsync();
        var document = Yaml.ToJsonSingle("""
            apiVersion: security.ztm.dev/v1
            kind: PeerAuthentication
            metadata: {name: default, namespace: shop}
            status:
              observedGeneration: 3
              conditions:
                - {type: Accepted, status: "True", reason: Valid, message: pushed to 4 sidecars, lastTransitionTime: "2026-12-06T10:00:00Z", observedGeneration: 3}
            """)!;
        Assert.Empty(crds.Validate(document));
        document["status"]!["conditions"]![0]!["status"] = "Yes";
        Assert.NotEmpty(crds.Validate(document));
    }
}
