using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// Holds the current <see cref="PolicySnapshot"/> and decides requests against it. A new snapshot replaces the old one
/// atomically; a decision reads the reference once, so it sees one consistent version.
/// </summary>
public sealed class Authorizer(PolicySnapshot initial)
{
    private PolicySnapshot _snapshot = initial;

    /// <summary>An authorizer that denies everything until the first snapshot arrives (fail closed).</summary>
    public Authorizer(WorkloadRef workload)
        : this(PolicySnapshot.Empty(workload))
    {
    }

    public PolicySnapshot Snapshot => Volatile.Read(ref _snapshot);

    public void Update(PolicySnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        Volatile.Write(ref _snapshot, snapshot);
    }

    public AuthorizationDecision Authorize(in RequestAttributes request) => Snapshot.Evaluate(request, default);

    /// <summary>As <see cref="Authorize(in RequestAttributes)"/>, writing the matching AUDIT rules to <paramref name="audits"/>.</summary>
    public AuthorizationDecision Authorize(in RequestAttributes request, Span<RuleMatch> audits) => Snapshot.Evaluate(request, audits);
}
