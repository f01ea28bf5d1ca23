using System.Collections.Immutable;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// <c>kind: AuthorizationPolicy</c>. A request matches the policy if it matches any of its rules; a policy
/// without rules matches nothing (an ALLOW policy with no rules therefore allows nothing, but it still counts as
/// "an ALLOW policy exists for this workload").
/// </summary>
public sealed record AuthorizationPolicy(ResourceMetadata Metadata, AuthorizationPolicySpec Spec) : PolicyResource(Metadata)
{
    public const string KindName = "AuthorizationPolicy";

    public override string Kind => KindName;

    public override WorkloadSelector? Selector => Spec.Selector;
}

public sealed record AuthorizationPolicySpec(WorkloadSelector? Selector, PolicyAction Action, ImmutableArray<AuthorizationRule> Rules);

/// <summary>DENY wins over ALLOW; AUDIT only records and never changes a decision.</summary>
public enum PolicyAction
{
    Allow,
    Deny,
    Audit,
}

/// <summary>
/// One rule: any <see cref="From"/> matches (or none given), any <see cref="To"/> matches (or none given), and every
/// <see cref="When"/> matches. A rule with none of the three matches every request.
/// </summary>
public sealed record AuthorizationRule(ImmutableArray<RuleSource> From, ImmutableArray<RuleOperation> To, ImmutableArray<RuleCondition> When)
{
    public static AuthorizationRule MatchAll { get; } = new([], [], []);
}

/// <summary>
/// <c>from[].source</c>. Every list given must match (AND); within a list any entry matches (OR).
/// <list type="bullet">
/// <item><see cref="Principals"/>: SPIFFE IDs of the caller's certificate; <c>*</c> any authenticated caller;
/// a trailing <c>/*</c> (<c>spiffe://cluster.local/ns/shop/*</c>) any ID under that path.</item>
/// <item><see cref="Namespaces"/>: the caller's namespace (from its SPIFFE ID); <c>*</c> any.</item>
/// <item><see cref="RequestPrincipals"/>: the JWT's <c>iss/sub</c>; <c>iss/*</c> any subject of that issuer;
/// <c>*</c> any validated JWT.</item>
/// </list>
/// </summary>
public sealed record RuleSource(ImmutableArray<string> Principals, ImmutableArray<string> Namespaces, ImmutableArray<string> RequestPrincipals);

/// <summary>
/// <c>to[].operation</c>. Every list given must match (AND); within a list any entry matches (OR).
/// Paths: exact <c>/orders</c>, prefix <c>/orders/*</c> (or any <c>prefix*</c>), suffix <c>*.json</c>, or <c>*</c>.
/// Methods are upper-case HTTP methods or <c>*</c>; ports are the workload's inbound ports.
/// </summary>
public sealed record RuleOperation(ImmutableArray<string> Methods, ImmutableArray<string> Paths, ImmutableArray<int> Ports);

/// <summary>
/// <c>when[]</c>: a condition on one request attribute. Keys:
/// <c>request.headers[name]</c>, <c>request.auth.claims[name]</c>, <c>source.ip</c> (IP or CIDR values),
/// <c>request.time</c> (<c>HH:mm-HH:mm</c> windows, in <see cref="TimeZone"/> (default UTC), on <see cref="Days"/>
/// (default every day)). The condition holds if the attribute matches one of <see cref="Values"/> (when given) and none
/// of <see cref="NotValues"/> (when given); an absent attribute fails <c>values</c> and passes <c>notValues</c>.
/// </summary>
public sealed record RuleCondition(string Key, ImmutableArray<string> Values, ImmutableArray<string> NotValues)
{
    /// <summary>IANA time zone for <c>request.time</c>, e.g. <c>Europe/Paris</c>.</summary>
    public string? TimeZone { get; init; }

    /// <summary>Days for <c>request.time</c>: <c>Mon</c> … <c>Sun</c>. A window across midnight belongs to the day it starts.</summary>
    public ImmutableArray<string> Days { get; init; } = [];
}
