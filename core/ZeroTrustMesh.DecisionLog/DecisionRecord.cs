namespace ZeroTrustMesh.DecisionLog;

/// <summary>
/// One authorization decision as the sidecar logs it: who called (a SPIFFE ID, or "plaintext"), the request line
/// (method, path without the query, application port), the status the caller got, whether the request reached the
/// app, and the AuthorizationPolicy and rule that decided (none when no rule did: default deny, or a refusal before
/// authorization ran), with the refusal's reason.
/// </summary>
public readonly record struct Decision(
    DateTimeOffset Time, string Caller, string Method, string Path, int Port, int Status, bool Allowed, string? Policy, int Rule, string? Reason);

/// <summary>What a line of a segment holds.</summary>
public enum RecordKind
{
    /// <summary>An authorization decision (<see cref="Decision"/>).</summary>
    Decision,
    /// <summary>Decisions the sidecar could not log (its queue was full): how many, at this place in the chain.</summary>
    Gap,
    /// <summary>The first record of every segment: the chain's id and the workload, and bytes of a torn line a crash left.</summary>
    Open,
}

/// <summary>A record read back from a segment: the fields the verifier needs and the line as it was.</summary>
public sealed record ParsedRecord(
    long Sequence, RecordKind Kind, DateTimeOffset Time, string Previous, string Hash, string? Chain, string? Workload, long Lost, string? Caller,
    string? Method, string? Path, int Status, bool Allowed, string? Policy, int Rule, string? Reason);
