using ZeroTrustMesh.ControlPlane.Discovery;

namespace ZeroTrustMesh.ControlPlane.Tests.Discovery;

/// <summary>Observed operations against the declared API: shadow, zombie and unused.</summary>
public sealed class ApiDiffTests
{
    [Theory]
    [InlineData("/users/{id}", "/users/{}", true)]
    [InlineData("/users/{id}", "/users/me", true)] // a literal seen often is still covered by a declared parameter
    [InlineData("/users/me", "/users/{}", false)] // an observed parameter is not covered by one declared literal
    [InlineData("/users/{id}", "/users/{}/keys", false)]
    [InlineData("/users/{id}/keys", "/users/{}/keys", true)]
    public void Coverage(string declared, string observed, bool covers) => Assert.Equal(covers, ApiDiff.Covers(declared, observed));

    [Fact]
    public void Shadow_zombie_and_unused_operations_are_found()
    {
        IReadOnlyList<DeclaredOperation> declared =
        [
            new("GET", "/users/{userId}"),
            new("GET", "/users/{userId}/orders"),
            new("DELETE", "/users/{userId}", Deprecated: true),
            new("GET", "/books"),
        ];
        IReadOnlyList<ObservedOperation> observed =
        [
            new("GET", "/users/{}", 120),
            new("GET", "/users/{}/orders", 40),
            new("DELETE", "/users/{}", 3), // deprecated, still called
            new("POST", "/users/{}/orders", 7), // the method is not declared
            new("GET", "/internal/debug", 2), // the path is not declared
        ];

        var findings = ApiDiff.Compare(declared, observed).Select(f => $"{f.Kind} {f.Method} {f.Template} {f.Requests}").Order(StringComparer.Ordinal).ToList();

        Assert.Equal(
        [
            "Shadow GET /internal/debug 2",
            "Shadow POST /users/{}/orders 7",
            "Unused GET /books 0",
            "Zombie DELETE /users/{userId} 3",
        ], findings);
    }
}
