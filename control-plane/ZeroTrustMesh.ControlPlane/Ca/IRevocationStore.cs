using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>One change of the revocation list: the new list, and what the audit log says about it.</summary>
internal sealed record RevocationChange(RevocationList List, string Action, string Actor, IReadOnlyList<string> Subjects, string? Reason);

/// <summary>
/// Where the revocations in force are kept: <c>revocations.json</c> in the data directory standalone
/// (<see cref="FileRevocationStore"/>), a Kubernetes object later. Every workload call and renewal is checked against
/// <see cref="Current"/>; every change reaches the config (a new version) through <see cref="Changed"/>.
/// </summary>
internal interface IRevocationStore
{
    RevocationList Current { get; }

    /// <summary>
    /// Applies <paramref name="change"/> to the current list under the store's lock. When it returns another list,
    /// that list is stored first, then <see cref="Changed"/> is raised (on this thread), and the result is true.
    /// </summary>
    /// <exception cref="IOException">The list could not be stored; nothing changed.</exception>
    bool Revise(Func<RevocationList, (RevocationList Next, IReadOnlyList<string> Subjects)> change, string action, string actor, string? reason);

    /// <summary>Raised after every stored change, in order.</summary>
    event Action<RevocationChange>? Changed;
}
