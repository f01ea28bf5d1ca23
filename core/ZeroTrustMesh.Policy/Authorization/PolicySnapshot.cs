using System.Runtime.CompilerServices;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// The compiled, immutable authorization policy of one workload at one version. Build it with
/// <see cref="PolicyCompiler"/>, swap it atomically, and let each decision read one snapshot.
/// <para>
/// Rules are indexed so a decision looks only at rules that can match: a rule whose every operation names only exact
/// paths or <c>/prefix/*</c> paths is filed under those paths; otherwise, a rule whose every source names only exact
/// principals is filed under those principals; the rest (and every AUDIT rule) are checked on each request.
/// </para>
/// </summary>
public sealed class PolicySnapshot
{
    private readonly Dictionary<string, CompiledRule[]>.AlternateLookup<ReadOnlySpan<char>> _exactPaths;
    private readonly Dictionary<string, CompiledRule[]>.AlternateLookup<ReadOnlySpan<char>> _prefixPaths;
    private readonly int _prefixCount;
    private readonly Dictionary<string, CompiledRule[]> _principals;
    private readonly CompiledRule[] _general;
    private readonly CompiledRule[] _audits;
    private readonly string[] _auditPolicies;
    private readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _probePaths;
    private readonly int _probeCount;
    private readonly CompiledRule[] _connectionRules;
    private readonly CompiledRule[] _connectionAudits;

    internal PolicySnapshot(
        string version,
        WorkloadRef workload,
        int policyCount,
        int ruleCount,
        bool hasAllowPolicy,
        Dictionary<string, CompiledRule[]> exactPaths,
        Dictionary<string, CompiledRule[]> prefixPaths,
        Dictionary<string, CompiledRule[]> principals,
        CompiledRule[] general,
        CompiledRule[] audits,
        string[] auditPolicies,
        HashSet<string> probePaths,
        CompiledRule[] connectionRules,
        CompiledRule[] connectionAudits)
    {
        _connectionRules = connectionRules;
        _connectionAudits = connectionAudits;
        _auditPolicies = auditPolicies;
        Version = version;
        Workload = workload;
        PolicyCount = policyCount;
        RuleCount = ruleCount;
        HasAllowPolicy = hasAllowPolicy;
        _exactPaths = exactPaths.GetAlternateLookup<ReadOnlySpan<char>>();
        _prefixPaths = prefixPaths.GetAlternateLookup<ReadOnlySpan<char>>();
        _prefixCount = prefixPaths.Count;
        _principals = principals;
        _general = general;
        _audits = audits;
        _probePaths = probePaths.GetAlternateLookup<ReadOnlySpan<char>>();
        _probeCount = probePaths.Count;
        IndexedPathCount = exactPaths.Count + prefixPaths.Count;
        IndexedPrincipalCount = principals.Count;
        UnindexedRuleCount = general.Length + audits.Length;
    }

    /// <summary>A snapshot with no policy: everything is denied (fail closed until the first policy arrives).</summary>
    public static PolicySnapshot Empty(WorkloadRef workload, string version = "") =>
        PolicyCompiler.Compile(version, workload, []);

    public string Version { get; }

    public WorkloadRef Workload { get; }

    /// <summary>AuthorizationPolicies that select this workload.</summary>
    public int PolicyCount { get; }

    public int RuleCount { get; }

    /// <summary>The AUDIT policies that select this workload (up to <see cref="AuditOutcome.MaxPolicies"/>), in name order.</summary>
    public IReadOnlyList<string> AuditPolicies => _auditPolicies;

    /// <summary>False means every request is denied with "no ALLOW policy for this workload" (health probes aside).</summary>
    public bool HasAllowPolicy { get; }

    /// <summary>Distinct exact and prefix paths in the path index (for the config dump).</summary>
    public int IndexedPathCount { get; }

    public int IndexedPrincipalCount { get; }

    /// <summary>Rules checked on every request because they could not be indexed.</summary>
    public int UnindexedRuleCount { get; }

    /// <summary>
    /// Decides one request, or one connection (<see cref="RequestAttributes.IsConnection"/>):
    /// 1. collect candidate rules from the path index (exact, then each <c>/segment/</c> prefix), the principal index and
    ///    the unindexed list; for a connection, every rule as <see cref="ConnectionRules"/> reads it (a connection is
    ///    decided once, so it needs no index);
    /// 2. the lowest-ordered matching DENY rule denies;
    /// 3. otherwise the lowest-ordered matching ALLOW rule allows;
    /// 4. otherwise a GET/HEAD to a declared health probe path is allowed;
    /// 5. otherwise deny: "no ALLOW policy matched", or "no ALLOW policy for this workload" if there is none.
    /// AUDIT rules are all checked and written to <paramref name="audits"/> (up to its length); they never decide.
    /// </summary>
    public AuthorizationDecision Evaluate(in RequestAttributes request, Span<RuleMatch> audits)
    {
        var path = request.Path;
        var query = path.IndexOfAny('?', '#');
        if (query >= 0)
        {
            path = path[..query];
        }
        var methodBit = PolicySyntax.MethodBit(request.Method);
        var state = new State();

        var auditRules = _audits;
        if (request.IsConnection)
        {
            Visit(_connectionRules, ref state, request, path, methodBit);
            auditRules = _connectionAudits;
        }
        else
        {
            VisitIndexed(ref state, request, path, methodBit);
        }

        var auditCount = 0;
        RuleMatch? firstAudit = null;
        var auditMatched = 0UL;
        foreach (var rule in auditRules)
        {
            if (rule.Matches(request, path, methodBit))
            {
                if (rule.AuditSlot >= 0)
                {
                    auditMatched |= 1UL << rule.AuditSlot;
                }
                var match = new RuleMatch(rule.Policy, rule.RuleIndex);
                firstAudit ??= match;
                if (auditCount < audits.Length)
                {
                    audits[auditCount] = match;
                }
                auditCount++;
            }
        }

        var audit = new AuditOutcome(_auditPolicies, auditMatched);
        if (state.Deny is { } deny)
        {
            return new AuthorizationDecision(false, deny.Policy, deny.RuleIndex, deny.Reason, Version, auditCount, firstAudit, audit);
        }
        if (state.Allow is { } allow)
        {
            return new AuthorizationDecision(true, allow.Policy, allow.RuleIndex, allow.Reason, Version, auditCount, firstAudit, audit);
        }
        if (_probeCount > 0 && (methodBit & ProbeMethods) != 0 && _probePaths.Contains(path))
        {
            return new AuthorizationDecision(true, null, -1, AuthorizationDecision.HealthProbe, Version, auditCount, firstAudit, audit);
        }
        return new AuthorizationDecision(false, null, -1,
            HasAllowPolicy ? AuthorizationDecision.NoAllowPolicyMatched : AuthorizationDecision.NoAllowPolicy,
            Version, auditCount, firstAudit, audit);
    }

    /// <summary>Step 1 for a request: the rules its path and caller can match, then the unindexed ones.</summary>
    private void VisitIndexed(ref State state, in RequestAttributes request, ReadOnlySpan<char> path, uint methodBit)
    {
        if (_exactPaths.TryGetValue(path, out var rules))
        {
            Visit(rules, ref state, request, path, methodBit);
        }
        if (_prefixCount > 0)
        {
            // Prefixes are filed by their text up to and including a '/', so each '/' in the path is one lookup.
            for (var i = path.IndexOf('/'); i >= 0; i = NextSlash(path, i))
            {
                if (_prefixPaths.TryGetValue(path[..(i + 1)], out rules))
                {
                    Visit(rules, ref state, request, path, methodBit);
                }
            }
        }
        if (_principals.Count > 0 && request.Caller is { IsEmpty: false } caller && _principals.TryGetValue(caller.Value, out rules))
        {
            Visit(rules, ref state, request, path, methodBit);
        }
        Visit(_general, ref state, request, path, methodBit);
    }

    /// <summary>Kubelet httpGet probes send GET; HEAD is what some load balancers use for the same check.</summary>
    private static readonly uint ProbeMethods = PolicySyntax.MethodBit("GET") | PolicySyntax.MethodBit("HEAD");

    private static int NextSlash(ReadOnlySpan<char> path, int i)
    {
        var next = path[(i + 1)..].IndexOf('/');
        return next < 0 ? -1 : i + 1 + next;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Visit(CompiledRule[] rules, ref State state, in RequestAttributes request, ReadOnlySpan<char> path, uint methodBit)
    {
        foreach (var rule in rules)
        {
            if (rule.Action == PolicyAction.Deny)
            {
                if ((state.Deny is null || rule.Id < state.Deny.Id) && rule.Matches(request, path, methodBit))
                {
                    state.Deny = rule;
                }
            }
            else if (state.Deny is null && (state.Allow is null || rule.Id < state.Allow.Id) && rule.Matches(request, path, methodBit))
            {
                // Once a DENY has matched no ALLOW can change the outcome, so ALLOW rules are no longer evaluated.
                state.Allow = rule;
            }
        }
    }

    private struct State
    {
        public CompiledRule? Deny;
        public CompiledRule? Allow;
    }
}
