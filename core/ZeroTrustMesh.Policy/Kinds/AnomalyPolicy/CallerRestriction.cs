using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Kinds;

public enum RestrictionAction
{
    /// <summary>Requests beyond <see cref="CallerRestriction.RequestsPerMinute"/> get 429 with Retry-After.</summary>
    Throttle,

    /// <summary>Every request gets 403 naming the anomaly.</summary>
    Quarantine,
}

/// <summary>
/// A temporary restriction of one caller of one workload that anomaly response decided (an AnomalyPolicy in Enforce):
/// sent to the workload's sidecars in their config snapshot, enforced by their rate-limit stage, withdrawn by the control
/// plane when the caller has been quiet for the cool-off.
/// </summary>
/// <param name="Caller">The caller's SPIFFE ID (or <c>plaintext</c>); matched when <paramref name="Subject"/> is empty.</param>
/// <param name="Subject">A JWT subject: matched against the validated token's <c>sub</c> claim instead of the caller.</param>
/// <param name="Route">Which requests: <c>*</c> every one; a path template (<c>/users/{id}</c>); or an exact path.</param>
/// <param name="Reason">Names the anomaly (event, policy, evidence) for the refusal and the access log.</param>
public sealed record CallerRestriction(
    WorkloadRef Workload, string Caller, string Subject, string Route, RestrictionAction Action, int RequestsPerMinute, string Reason)
{
    public const string EveryRoute = "*";

    /// <summary>Who, as shown to operators: the subject or the caller.</summary>
    public string Principal => Subject.Length > 0 ? $"sub:{Subject}" : Caller;
}
