using System.Collections.Frozen;
using System.Diagnostics.CodeAnalysis;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// The kinds a reader, validator or sidecar knows. Names are matched exactly in documents (as Kubernetes does) and
/// case-insensitively where an operator types them (<c>ztmctl get authorizationpolicy</c>, as kubectl).
/// </summary>
public sealed class PolicyKinds
{
    /// <summary>The kinds the mesh ships with. Adding a kind is its folder plus one line here.</summary>
    public static PolicyKinds Builtin { get; } = new(
    [
        AuthorizationPolicyKind.Instance,
        RequestAuthenticationKind.Instance,
        PeerAuthenticationKind.Instance,
        RateLimitPolicyKind.Instance,
        ApiSpecKind.Instance,
        AnomalyPolicyKind.Instance,
    ]);

    private readonly FrozenDictionary<string, PolicyKind> _byName;
    private readonly FrozenDictionary<string, PolicyKind> _byNameIgnoringCase;

    public PolicyKinds(IEnumerable<PolicyKind> kinds)
    {
        All = [.. kinds];
        _byName = All.ToFrozenDictionary(k => k.Name, StringComparer.Ordinal);
        _byNameIgnoringCase = All.ToFrozenDictionary(k => k.Name, StringComparer.OrdinalIgnoreCase);
    }

    public IReadOnlyList<PolicyKind> All { get; }

    /// <summary>"AuthorizationPolicy, RequestAuthentication, …" for messages and help.</summary>
    public string Names => string.Join(", ", All.Select(k => k.Name));

    /// <summary>These kinds and <paramref name="more"/> (a test or an extension registering its own).</summary>
    public PolicyKinds With(params PolicyKind[] more) => new([.. All, .. more]);

    /// <summary>The kind a document names; exact, as Kubernetes matches <c>kind:</c>.</summary>
    public bool TryGet(string name, [NotNullWhen(true)] out PolicyKind? kind) => _byName.TryGetValue(name, out kind);

    /// <summary>
    /// The kind an operator typed: any case, and kubectl's plural (<c>authorizationpolicies</c>). Null when unknown.
    /// </summary>
    public PolicyKind? Find(string typed)
    {
        if (_byNameIgnoringCase.TryGetValue(typed, out var kind))
        {
            return kind;
        }
        foreach (var candidate in All)
        {
            if (string.Equals(Plural(candidate.Name), typed, StringComparison.OrdinalIgnoreCase))
            {
                return candidate;
            }
        }
        return null;
    }

    private static string Plural(string name) =>
        name.EndsWith('y') ? name[..^1] + "ies" : name.EndsWith('s') ? name + "es" : name + "s";
}
