using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>
/// The kinds the policy API takes, by the names an operator may type for them: as kubectl, any case, singular or plural
/// (<c>AuthorizationPolicy</c>, <c>authorizationpolicy</c>, <c>authorizationpolicies</c>). A stand-in for the kind
/// registry's <c>PolicyKinds.Builtin.Find</c> on main, which does the same: <see cref="Resolve"/> becomes that lookup.
/// </summary>
internal static class KindNames
{
    public static readonly IReadOnlyList<string> All =
        [AuthorizationPolicy.KindName, RequestAuthentication.KindName, PeerAuthentication.KindName, RateLimitPolicy.KindName];

    /// <summary>The kind <paramref name="name"/> stands for, or null.</summary>
    public static string? Resolve(string name) =>
        All.FirstOrDefault(k => name.Equals(k, StringComparison.OrdinalIgnoreCase) || name.Equals(Plural(k), StringComparison.OrdinalIgnoreCase));

    public static string Unknown(string name) => $"unknown kind '{name}': one of {string.Join(", ", All)} (any case, singular or plural)";

    private static string Plural(string kind) => kind.EndsWith('y') ? kind[..^1] + "ies" : kind + "s";
}
