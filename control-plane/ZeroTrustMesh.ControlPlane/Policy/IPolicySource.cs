using System.Collections.Immutable;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>One change of the policy set: the whole new set, and what the audit log says about it.</summary>
internal sealed record PolicyChange(ImmutableDictionary<ResourceKey, StoredResource> Resources, string Action, string Actor, IReadOnlyList<string> Keys);

/// <summary>What an apply did to each resource it carried ("kind/ns/name created|configured|unchanged").</summary>
/// <param name="Warnings">Applied, but probably not what was meant (<see cref="ZeroTrustMesh.Policy.Authorization.ConnectionRules.Warnings"/>).</param>
internal sealed record PolicyApplyResult(IReadOnlyList<string> Outcomes, bool Changed, IReadOnlyList<string> Warnings);

/// <summary>A change this source cannot make (the message says why and what to do instead).</summary>
/// <param name="notServed">
/// The source takes no changes through the control plane at all (custom resources in Kubernetes: kubectl writes them),
/// rather than refusing this one change; the API answers <c>UNIMPLEMENTED</c> and ztmctl exits with its usage code.
/// </param>
internal sealed class PolicySourceException(string message, bool notServed = false) : Exception(message)
{
    public bool NotServed { get; } = notServed;
}

/// <summary>
/// Where policy resources live: a watched directory standalone (<see cref="DirectoryPolicySource"/>), custom resources
/// in Kubernetes (<see cref="KubernetesPolicySource"/>). The source validates what it reads and never publishes an
/// invalid resource (the directory: as a whole set, keeping the last good set; Kubernetes: each resource on its own);
/// <see cref="ConfigStore"/> versions what it publishes.
/// </summary>
internal interface IPolicySource
{
    /// <summary>Where the resources live, for messages: a directory, a cluster.</summary>
    string Location { get; }

    /// <summary>The resources in force, by key.</summary>
    ImmutableDictionary<ResourceKey, StoredResource> Resources { get; }

    /// <summary>Validates the documents of <paramref name="yaml"/> together with the rest of the set and stores them.</summary>
    /// <exception cref="ZeroTrustMesh.Policy.Validation.PolicyValidationException">Nothing was stored; every error is listed, each naming its source.</exception>
    /// <exception cref="IOException">The set could not be stored.</exception>
    /// <exception cref="PolicySourceException">The source takes no changes through the control plane (<see cref="PolicySourceException.NotServed"/>).</exception>
    PolicyApplyResult Apply(string source, string yaml, string actor);

    /// <summary>Removes one resource; false if there is none with that key.</summary>
    /// <exception cref="PolicySourceException">The resource cannot be removed through this source.</exception>
    bool Delete(ResourceKey key, string actor);

    /// <summary>Raised after every change of the set (an apply, a delete, or an edit made outside the control plane), in order.</summary>
    event Action<PolicyChange>? Changed;
}
