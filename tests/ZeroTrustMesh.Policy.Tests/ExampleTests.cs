using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Yaml;
using static ZeroTrustMesh.Policy.Tests.PolicyTestSupport;

namespace ZeroTrustMesh.Policy.Tests;

/// <summary>The shipped examples are valid and the quickstart set means what its comments say.</summary>
public sealed class ExampleTests
{
    private static readonly string Examples = Path.Combine(AppContext.BaseDirectory, "examples");

    [Theory]
    [InlineData("quickstart.yaml")]
    [InlineData("reference.yaml")]
    public void Examples_are_valid(string file)
    {
        var result = PolicyYaml.Load(file, File.ReadAllText(Path.Combine(Examples, file)));
        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        Assert.NotEmpty(result.Documents);
    }

    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";

    public static TheoryData<string, string, Req, bool> Quickstart => new()
    {
        { "frontend GET /orders/42 on orders", "orders", new Req(Frontend, "GET", "/orders/42"), true },
        { "frontend POST /orders/42 on orders", "orders", new Req(Frontend, "POST", "/orders/42"), false },
        { "frontend GET /admin on orders", "orders", new Req(Frontend, "GET", "/admin"), false },
        { "orders GET /orders/42 on orders", "orders", new Req(Orders, "GET", "/orders/42"), false },
        { "orders POST /payments with write:payments", "payments", new Req(Orders, "POST", "/payments") { Claims = new() { ["scope"] = ["read:payments write:payments"] } }, true },
        { "orders POST /payments without the scope", "payments", new Req(Orders, "POST", "/payments") { Claims = new() { ["scope"] = ["read:payments"] } }, false },
        { "orders POST /payments without a JWT", "payments", new Req(Orders, "POST", "/payments"), false },
        { "frontend POST /payments with write:payments", "payments", new Req(Frontend, "POST", "/payments") { Claims = new() { ["scope"] = ["write:payments"] } }, false },
        { "orders GET /anything on frontend", "frontend", new Req(Orders, "GET", "/"), false },
    };

    [Theory]
    [MemberData(nameof(Quickstart))]
    public void Quickstart_policy(string name, string service, Req request, bool allowed)
    {
        var documents = PolicyYaml.Load("quickstart.yaml", File.ReadAllText(Path.Combine(Examples, "quickstart.yaml"))).GetValidDocuments();
        var snapshot = PolicyCompiler.Compile("1", new WorkloadRef("shop", service), documents.Select(d => d.Resource).OfType<AuthorizationPolicy>());
        var decision = Decide(snapshot, request);
        Assert.True(allowed == decision.Allowed, $"{name}: {decision}");
    }
}
