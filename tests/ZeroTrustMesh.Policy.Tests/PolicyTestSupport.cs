using System.Diagnostics.CodeAnalysis;
using System.Net;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.Policy.Tests;

/// <summary>A request for a test case; turned into a <see cref="RequestAttributes"/> at evaluation.</summary>
public sealed record Req(string? Caller = "spiffe://cluster.local/ns/shop/sa/frontend", string Method = "GET", string Path = "/", int Port = 8080)
{
    public Dictionary<string, string[]> Headers { get; init; } = [];

    public Dictionary<string, string[]>? Claims { get; init; }

    public string? Ip { get; init; }

    public DateTimeOffset Now { get; init; } = new(2025, 6, 4, 12, 0, 0, TimeSpan.Zero); // a Wednesday

    /// <summary>A connection relayed as bytes (a TCP or L4 port): method, path, headers and claims are not sent.</summary>
    public bool Connection { get; init; }
}

public sealed class Values(Dictionary<string, string[]> values) : IRequestValues
{
    public bool TryGetValue(string name, int index, [NotNullWhen(true)] out string? value)
    {
        value = values.TryGetValue(name, out var all) && index < all.Length ? all[index] : null;
        return value is not null;
    }
}

internal static class PolicyTestSupport
{
    public static readonly WorkloadRef Orders = new("shop", "orders");

    public const string Header = "apiVersion: security.ztm.dev/v1\nkind: AuthorizationPolicy\n";

    /// <summary>One AuthorizationPolicy document in namespace shop; <paramref name="body"/> is the YAML under 'spec:' (2-space indented).</summary>
    public static string Doc(string name, string body) =>
        $"{Header}metadata:\n  name: {name}\n  namespace: shop\nspec:\n{body}";

    public static PolicySnapshot Compile(string yaml, IEnumerable<string>? probes = null, WorkloadRef? workload = null)
    {
        var result = PolicyYaml.Load("test.yaml", yaml);
        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        return PolicyCompiler.Compile("v1", workload ?? Orders, result.Documents.Select(d => d.Resource).OfType<AuthorizationPolicy>(), probes);
    }

    public static AuthorizationDecision Decide(PolicySnapshot snapshot, Req req) => Decide(snapshot, req, default);

    public static AuthorizationDecision Decide(PolicySnapshot snapshot, Req req, Span<RuleMatch> audits)
    {
        SpiffeId? caller = req.Caller is null ? null : SpiffeId.Parse(req.Caller);
        string? ns = null;
        if (caller is { } c && c.TryGetWorkload(out var n, out _))
        {
            ns = n;
        }
        var request = new RequestAttributes
        {
            Caller = caller,
            CallerNamespace = ns,
            Method = req.Connection ? "" : req.Method,
            Path = req.Connection ? "" : req.Path,
            Port = req.Port,
            Headers = req.Connection ? null : new Values(req.Headers),
            Claims = req.Connection || req.Claims is null ? null : new Values(req.Claims),
            SourceAddress = req.Ip is null ? null : IPAddress.Parse(req.Ip),
            Now = req.Now,
            IsConnection = req.Connection,
        };
        return snapshot.Evaluate(request, audits);
    }
}
