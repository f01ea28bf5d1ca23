using System.Diagnostics.CodeAnalysis;
using System.Net;
using BenchmarkDotNet.Attributes;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Benchmarks.Policy;

/// <summary>
/// One authorization decision against N AuthorizationPolicies for one workload, against a baseline in the same run: a
/// hand-written allow-list check (one hash-set lookup of the caller and one path prefix test), the least any authorizer
/// must do. Policies are a third each exact-path, prefix-path and principal-only rules (so all three indexes are
/// exercised), each with a method and a header condition, plus three DENY policies (two not indexable, so checked on
/// every request) and one AUDIT policy.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 10)]
public class AuthorizerBenchmarks
{
    private static readonly WorkloadRef Workload = new("shop", "orders");

    private PolicySnapshot _snapshot = null!;
    private SpiffeId _caller;
    private SpiffeId _stranger;
    private string _path = null!;
    private string _prefix = null!;
    private HashSet<string> _allowList = null!;
    private readonly HeaderValues _headers = new();
    private readonly IPAddress _address = IPAddress.Parse("10.1.2.3");
    private readonly RuleMatch[] _audits = new RuleMatch[4];

    [Params(10, 1_000, 10_000)]
    public int Policies { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        // N policies in all: N - 4 ALLOW policies plus the 4 fixed ones below (10,000 is also the validator's rule limit).
        var policies = new List<AuthorizationPolicy>();
        var allowCount = Policies - 4;
        for (var i = 0; i < allowCount; i++)
        {
            var principal = $"spiffe://cluster.local/ns/shop/sa/s{i}";
            RuleOperation to = (i % 3) switch
            {
                0 => new(["GET"], [$"/svc{i}/items"], []),
                1 => new(["GET", "HEAD"], [$"/svc{i}/*"], []),
                _ => new(["POST"], [], [8080]),
            };
            policies.Add(Policy($"allow-{i}", PolicyAction.Allow, new AuthorizationRule(
                [new RuleSource([principal], [], [])],
                [to],
                [new RuleCondition("request.headers[x-tenant]", [], ["blocked"])])));
        }
        policies.Add(Policy("deny-admin", PolicyAction.Deny, new AuthorizationRule([], [new RuleOperation([], ["/admin/*"], [])], [])));
        policies.Add(Policy("deny-exe-outside", PolicyAction.Deny, new AuthorizationRule([], [new RuleOperation([], ["*.exe"], [])],
            [new RuleCondition("source.ip", [], ["10.0.0.0/8"])])));
        policies.Add(Policy("deny-delete", PolicyAction.Deny, new AuthorizationRule([], [new RuleOperation(["DELETE"], [], [])], [])));
        policies.Add(Policy("audit-writes", PolicyAction.Audit, new AuthorizationRule([], [new RuleOperation(["POST", "PUT"], [], [])], [])));

        _snapshot = PolicyCompiler.Compile("bench", Workload, policies, ["/healthz"]);

        // A prefix-path policy in the middle of the set.
        var target = (allowCount / 2 / 3 * 3) + 1;
        _caller = SpiffeId.Parse($"spiffe://cluster.local/ns/shop/sa/s{target}");
        _stranger = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/stranger");
        _path = $"/svc{target}/items/42?expand=lines";
        _prefix = $"/svc{target}/";
        _allowList = [.. Enumerable.Range(0, allowCount).Select(i => $"spiffe://cluster.local/ns/shop/sa/s{i}")];

        if (!Allowed() || Denied())
        {
            throw new InvalidOperationException("The benchmark requests do not decide as intended.");
        }
    }

    private static AuthorizationPolicy Policy(string name, PolicyAction action, AuthorizationRule rule) =>
        new(new ResourceMetadata(name, Workload.Namespace), new AuthorizationPolicySpec(new WorkloadSelector(Workload.Service), action, [rule]));

    [Benchmark(Baseline = true, Description = "baseline: allow-list lookup")]
    public bool Baseline() => _allowList.Contains(_caller.Value) && _path.StartsWith(_prefix, StringComparison.Ordinal);

    [Benchmark(Description = "Authorize: allowed")]
    public bool Allowed()
    {
        var request = new RequestAttributes
        {
            Caller = _caller,
            CallerNamespace = "shop",
            Method = "GET",
            Path = _path,
            Port = 8080,
            Headers = _headers,
            SourceAddress = _address,
        };
        return _snapshot.Evaluate(request, _audits).Allowed;
    }

    [Benchmark(Description = "Authorize: denied (no ALLOW matched)")]
    public bool Denied()
    {
        var request = new RequestAttributes
        {
            Caller = _stranger,
            CallerNamespace = "shop",
            Method = "POST",
            Path = "/svc1/items",
            Port = 8080,
            Headers = _headers,
            SourceAddress = _address,
        };
        return _snapshot.Evaluate(request, _audits).Allowed;
    }

    private sealed class HeaderValues : IRequestValues
    {
        public bool TryGetValue(string name, int index, [NotNullWhen(true)] out string? value)
        {
            value = index == 0 && name == "x-tenant" ? "acme" : null;
            return value is not null;
        }
    }
}
