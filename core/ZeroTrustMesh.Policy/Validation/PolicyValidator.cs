using System.Collections.Immutable;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Validation;

/// <summary>
/// Checks a whole document set and returns every error at once (never stops at the first), so an operator fixes a file
/// in one pass and nothing is ever half-applied: each resource's metadata and selector, then its kind's own checks
/// (<see cref="PolicyKind.Validate"/>), duplicates across the set, and each kind's limits over the set. Used on apply in
/// the control plane and by the sidecar before it compiles a pushed snapshot (a config it cannot apply is NACKed).
/// </summary>
public static class PolicyValidator
{
    /// <summary>Upper bound of authorization rules in one set (<see cref="AuthorizationPolicyKind.MaxRules"/>).</summary>
    public const int MaxRules = AuthorizationPolicyKind.MaxRules;

    /// <summary>Upper bound of entries in any one list (principals, paths, values …).</summary>
    public const int MaxListEntries = Checks.MaxListEntries;

    public static ImmutableArray<PolicyError> Validate(IEnumerable<PolicyDocument> documents, PolicyKinds? kinds = null)
    {
        kinds ??= PolicyKinds.Builtin;
        var errors = new List<PolicyError>();
        var seen = new Dictionary<ResourceKey, PolicyDocument>();
        var byKind = new Dictionary<PolicyKind, List<PolicyDocument>>();
        foreach (var document in documents)
        {
            var resource = document.Resource;
            var sink = new ErrorSink(errors, document.Location);
            Checks.Metadata(resource.Metadata, sink);
            Checks.Selector(resource.Selector, sink);
            if (!kinds.TryGet(resource.Kind, out var kind))
            {
                sink.Add("kind", $"unknown kind '{resource.Kind}'; expected one of {kinds.Names}");
                continue;
            }
            kind.Validate(resource, sink);
            if (!byKind.TryGetValue(kind, out var ofKind))
            {
                byKind[kind] = ofKind = [];
            }
            ofKind.Add(document);
            if (!string.IsNullOrEmpty(resource.Metadata.Name))
            {
                var key = resource.Key;
                if (seen.TryGetValue(key, out var first))
                {
                    sink.Add("metadata.name", $"duplicate {key}: already defined in {first.Location}");
                }
                else
                {
                    seen.Add(key, document);
                }
            }
        }
        foreach (var kind in kinds.All)
        {
            if (byKind.TryGetValue(kind, out var ofKind))
            {
                kind.ValidateSet(ofKind, errors);
            }
        }
        return [.. errors];
    }

    /// <summary>Validates resources that did not come from a file (e.g. pushed to a sidecar); locations use the resource key.</summary>
    public static ImmutableArray<PolicyError> Validate(IEnumerable<PolicyResource> resources, PolicyKinds? kinds = null) =>
        Validate(resources.Select(PolicyDocument.FromResource), kinds);
}
