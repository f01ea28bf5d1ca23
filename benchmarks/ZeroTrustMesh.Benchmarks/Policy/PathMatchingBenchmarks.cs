using BenchmarkDotNet.Attributes;
using ZeroTrustMesh.Policy.Authorization;

namespace ZeroTrustMesh.Benchmarks.Policy;

/// <summary>
/// Path matching as rate-limit routes (and rules) use it: a set of N patterns, a third each exact (<c>/svc7/items</c>),
/// prefix (<c>/svc8/*</c>) and suffix (<c>*.ext9</c>), asked about a path that hits each kind and one that hits none.
/// Baseline: one ordinal <c>StartsWith</c> (of fields, so the JIT cannot fold it), the least a path check can cost.
/// Exact patterns are a hash lookup; prefixes and suffixes are tried one by one, so the cost of a prefix/suffix hit or a
/// miss grows with the number of such patterns (fine for a rule's few patterns; the authorizer indexes paths itself).
/// </summary>
[MemoryDiagnoser]
public class PathMatchingBenchmarks
{
    private PathPatterns _patterns = null!;
    private string _exact = null!;
    private string _prefix = null!;
    private string _suffix = null!;
    private string _baselinePath = null!;
    private string _baselinePrefix = null!;

    [Params(10, 1_000)]
    public int Patterns { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var patterns = Enumerable.Range(0, Patterns).Select(i => (i % 3) switch
        {
            0 => $"/svc{i}/items",
            1 => $"/svc{i}/*",
            _ => $"*.ext{i}",
        }).ToList();
        _patterns = new PathPatterns(patterns);
        _baselinePath = "/svc1/a/b/c";
        _baselinePrefix = "/svc1/";
        var last = Patterns - 1;
        // The last pattern of each kind, so a scan would have to go through the whole set.
        _exact = $"/svc{last - (last % 3)}/items";
        _prefix = $"/svc{last - ((last - 1) % 3 + 3) % 3}/a/b/c";
        _suffix = $"/download/file.ext{last - ((last - 2) % 3 + 3) % 3}";
        if (!ExactHit() || !PrefixHit() || !SuffixHit() || Miss())
        {
            throw new InvalidOperationException("benchmark setup: the hit paths must match and the miss path must not");
        }
    }

    [Benchmark(Baseline = true, Description = "baseline: one ordinal StartsWith")]
    public bool Baseline() => _baselinePath.StartsWith(_baselinePrefix, StringComparison.Ordinal);

    [Benchmark(Description = "PathPatterns.Matches: exact hit")]
    public bool ExactHit() => _patterns.Matches(_exact);

    [Benchmark(Description = "PathPatterns.Matches: prefix hit")]
    public bool PrefixHit() => _patterns.Matches(_prefix);

    [Benchmark(Description = "PathPatterns.Matches: suffix hit")]
    public bool SuffixHit() => _patterns.Matches(_suffix);

    [Benchmark(Description = "PathPatterns.Matches: miss")]
    public bool Miss() => _patterns.Matches("/nothing/here/at/all.txt");
}
