using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.ControlPlane.Tests.Policy;

/// <summary>The watched directory as a policy source: whatever a file holds, it never throws, and a bad set never replaces a good one.</summary>
public sealed class DirectoryPolicySourceTests : IDisposable
{
    /// <summary>The file from the issue: YamlDotNet's scanner throws InvalidOperationException (not a YamlException) on it.</summary>
    private const string UnclosedFlowMapping = "apiVersion: security.ztm.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: shop\nspec: {}\n";

    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-policies-").FullName;
    private readonly FakeTimeProvider _time = new();
    private readonly CollectingLogs _logs = new();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    [Fact]
    public void A_malformed_file_through_apply_is_an_error_naming_the_file_and_line()
    {
        using var source = Create();

        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("zz-bad.yaml", UnclosedFlowMapping, "operator"));

        var error = Assert.Single(refused.Errors);
        Assert.Equal("zz-bad.yaml line 3", error.Location);
        Assert.StartsWith("invalid YAML: ", error.Message, StringComparison.Ordinal);
        Assert.Empty(source.Resources);
    }

    [Fact]
    public void A_malformed_file_in_the_directory_at_start_keeps_the_last_good_set()
    {
        using (var first = Create())
        {
            first.Apply("orders.yaml", ControlPlanePartsTest.OrdersFromShop, "operator");
        }
        File.WriteAllText(Path.Combine(_dataDir, "policies", "zz-bad.yaml"), UnclosedFlowMapping);

        using var restarted = Create();

        Assert.Equal("AuthorizationPolicy/shop/orders-from-shop", Assert.Single(restarted.Resources.Values).KeyText);
        Assert.Contains(_logs.Lines, l => l.StartsWith("policy directory not applied, the last good set stays: zz-bad.yaml line 3: invalid YAML", StringComparison.Ordinal));
        Assert.Contains(_logs.Lines, l => l.Contains("serving the last good set, 1 resource(s)", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("DENY", "to: [{operation: {paths: [\"/admin\"]}}]", true)]
    [InlineData("DENY", "from: [{source: {requestPrincipals: [\"*\"]}}]", true)]
    [InlineData("DENY", "to: [{operation: {ports: [8080], paths: [\"/admin\"]}}]", false)] // scoped to a port: no warning, as Istio
    [InlineData("DENY", "from: [{source: {principals: [\"*\"]}}]", false)]
    [InlineData("ALLOW", "to: [{operation: {paths: [\"/admin\"]}}]", false)] // allows less on TCP: safe, no warning
    public void Apply_warns_about_a_deny_with_http_only_fields_and_no_ports_as_Istio_does(string action, string rule, bool warned)
    {
        using var source = Create();
        var yaml = $"apiVersion: security.ztm.dev/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  action: {action}\n  rules:\n    - {rule}\n";

        var result = source.Apply("p.yaml", yaml, "operator");

        Assert.Equal(["AuthorizationPolicy/shop/p created"], result.Outcomes);
        if (warned)
        {
            Assert.StartsWith("AuthorizationPolicy shop/p rule 0: ", Assert.Single(result.Warnings), StringComparison.Ordinal);
            Assert.Contains("denies every connection to the TCP and L4 ports", result.Warnings[0], StringComparison.Ordinal);
        }
        else
        {
            Assert.Empty(result.Warnings);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("# only a comment\n")]
    [InlineData("---\n---\n")]
    public void An_apply_without_resources_is_refused(string yaml)
    {
        using var source = Create();

        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("empty.yaml", yaml, "operator"));

        Assert.Equal("empty.yaml: no resources in it (empty, or only comments): nothing applied", Assert.Single(refused.Errors).ToString());
    }

    [Fact]
    public void Documents_keep_their_own_text_when_an_empty_document_comes_first()
    {
        using var source = Create();

        source.Apply("orders.yaml", "---\n" + ControlPlanePartsTest.OrdersFromShop, "operator");

        Assert.Contains("name: orders-from-shop", Assert.Single(source.Resources.Values).Yaml, StringComparison.Ordinal);
    }

    private DirectoryPolicySource Create()
    {
        using var factory = LoggerFactory.Create(l => l.AddProvider(_logs));
        return new DirectoryPolicySource(ControlPlaneParts.Options(_dataDir), _time, factory.CreateLogger<DirectoryPolicySource>());
    }
}
