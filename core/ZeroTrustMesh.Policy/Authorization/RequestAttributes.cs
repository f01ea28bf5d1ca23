using System.Diagnostics.CodeAnalysis;
using System.Net;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// The request as the authorizer sees it. A ref struct over spans so that the sidecar can describe a request without
/// copying or allocating; it lives only for the duration of one decision.
/// </summary>
public readonly ref struct RequestAttributes
{
    /// <summary>The caller's verified SPIFFE ID from its mTLS certificate; null for a plaintext (PERMISSIVE) caller.</summary>
    public SpiffeId? Caller { get; init; }

    /// <summary>The caller's namespace (from <c>/ns/NS/sa/SA</c>); the sidecar derives it once per connection.</summary>
    public string? CallerNamespace { get; init; }

    /// <summary>Upper-case HTTP method; empty for opaque TCP.</summary>
    public ReadOnlySpan<char> Method { get; init; }

    /// <summary>
    /// The request path, already normalized by the caller (percent-decoding of unreserved characters, dot segments,
    /// merged slashes). Anything from '?' on is ignored.
    /// </summary>
    public ReadOnlySpan<char> Path { get; init; }

    /// <summary>The workload's inbound port the request arrived on.</summary>
    public int Port { get; init; }

    /// <summary>Request headers; names are asked for in lower case.</summary>
    public IRequestValues? Headers { get; init; }

    /// <summary>Claims of the validated JWT, or null without one. Also supplies <c>iss</c>/<c>sub</c> for requestPrincipals.</summary>
    public IRequestValues? Claims { get; init; }

    public IPAddress? SourceAddress { get; init; }

    /// <summary>The decision's clock, for <c>request.time</c>; from the sidecar's TimeProvider.</summary>
    public DateTimeOffset Now { get; init; }

    /// <summary>
    /// A connection relayed as bytes (a declared TCP port or an L4-mode port), decided once: it has no method, path,
    /// headers or JWT, and rules read as <see cref="ConnectionRules"/> says (an ALLOW rule with HTTP-only fields
    /// matches nothing; a DENY or AUDIT rule applies without them).
    /// </summary>
    public bool IsConnection { get; init; }
}

/// <summary>
/// A multi-valued lookup (headers, JWT claims) that the authorizer can read without allocating: it asks for value 0, 1,
/// 2 … until <see cref="TryGetValue"/> returns false. A JWT array claim yields one value per element.
/// </summary>
public interface IRequestValues
{
    bool TryGetValue(string name, int index, [NotNullWhen(true)] out string? value);
}

/// <summary>A policy rule that matched: <c>namespace/name</c> and the rule's index in <c>spec.rules</c>.</summary>
public readonly record struct RuleMatch(string Policy, int Rule)
{
    public override string ToString() => $"{Policy} rule {Rule}";
}

/// <summary>
/// The AUDIT policies of a workload against one request, as a value that allocates nothing: the snapshot's list of
/// AUDIT policy names (<c>namespace/name</c>, shared by every decision) and a bit per policy, set when one of its rules
/// matched. A policy whose bit is clear would have denied the request as ALLOW (an ALLOW policy with no matching rule
/// denies), which is what least-privilege suggestions tried as AUDIT first want to know. At most
/// <see cref="MaxPolicies"/> AUDIT policies per workload are tracked (the first by name); the rest are not reported.
/// </summary>
public readonly struct AuditOutcome(string[]? policies, ulong matched)
{
    public const int MaxPolicies = 64;

    /// <summary>The AUDIT policies that apply, in name order (empty when none).</summary>
    public ReadOnlySpan<string> Policies => policies;

    public bool Matched(int index) => (matched & (1UL << index)) != 0;

    /// <summary>How many of <see cref="Policies"/> had no matching rule.</summary>
    public int UnmatchedCount => Policies.Length - System.Numerics.BitOperations.PopCount(matched);
}

/// <summary>
/// The outcome of one decision, as a value: whether it is allowed and what decided it (the policy and rule, or the
/// reason nothing did), so that access logs, metrics and the 403 body can explain it. AUDIT matches ride along and never
/// change <see cref="Allowed"/>.
/// </summary>
public readonly struct AuthorizationDecision
{
    public const string NoAllowPolicyMatched = "no ALLOW policy matched";
    public const string NoAllowPolicy = "no ALLOW policy for this workload";
    public const string HealthProbe = "health probe path of the workload";

    internal AuthorizationDecision(bool allowed, string? policy, int rule, string reason, string version, int auditCount, RuleMatch? firstAudit, AuditOutcome audit)
    {
        Audit = audit;
        Allowed = allowed;
        Policy = policy;
        Rule = rule;
        Reason = reason;
        SnapshotVersion = version;
        AuditCount = auditCount;
        FirstAudit = firstAudit;
    }

    public bool Allowed { get; }

    /// <summary><c>namespace/name</c> of the deciding policy; null for default deny and health probes.</summary>
    public string? Policy { get; }

    /// <summary>Index of the deciding rule in its policy's <c>spec.rules</c>; -1 when no rule decided.</summary>
    public int Rule { get; }

    /// <summary>A human sentence, e.g. <c>denied by DENY policy 'shop/no-admin' rule 0</c>; never allocated per request.</summary>
    public string Reason { get; }

    /// <summary>The snapshot version that decided, so a log line can be tied to the config that produced it.</summary>
    public string SnapshotVersion { get; }

    /// <summary>How many AUDIT rules matched (all of them are written to the caller's span, up to its length).</summary>
    public int AuditCount { get; }

    public RuleMatch? FirstAudit { get; }

    /// <summary>Which AUDIT policies that apply here had a matching rule: the others, as ALLOW, would have denied the request.</summary>
    public AuditOutcome Audit { get; }

    public override string ToString() => $"{(Allowed ? "ALLOW" : "DENY")}: {Reason}";
}
