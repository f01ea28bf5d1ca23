using Microsoft.Extensions.Primitives;
using ZeroTrustMesh.Policy.Authorization;

namespace ZeroTrustMesh.Sidecar.Authentication;

/// <summary>
/// The compiled RequestAuthentication of one policy snapshot: decides whether a request's bearer token, if any, is
/// acceptable. A request without a bearer token passes unauthenticated (no claims); an AuthorizationPolicy can then
/// require <c>requestPrincipals</c> or claims. A token that is present but not valid is refused, never ignored.
/// </summary>
internal interface IRequestAuthenticator
{
    /// <summary>Issuers this snapshot accepts; 0 means bearer tokens are ignored (no RequestAuthentication).</summary>
    int IssuerCount { get; }

    /// <param name="authorization">The request's <c>Authorization</c> header values.</param>
    ValueTask<AuthenticationResult> AuthenticateAsync(StringValues authorization, CancellationToken cancellation);
}

/// <summary>
/// The outcome as a value: the validated claims, nothing (no token), or why the token is refused.
/// <paramref name="ForwardOriginalToken"/>: the issuer's rule keeps the token on the request to the app (Istio's
/// <c>forwardOriginalToken</c>); otherwise a validated token is removed before forwarding.
/// </summary>
internal readonly record struct AuthenticationResult(IRequestValues? Claims, string? Error, bool ForwardOriginalToken = false)
{
    public static AuthenticationResult Anonymous => default;

    public bool Failed => Error is not null;

    public static AuthenticationResult Refused(string error) => new(null, error);
}

/// <summary>No RequestAuthentication selects the workload: tokens are not looked at (they may still be forwarded to the app).</summary>
internal sealed class NoRequestAuthentication : IRequestAuthenticator
{
    public static readonly NoRequestAuthentication Instance = new();

    public int IssuerCount => 0;

    public ValueTask<AuthenticationResult> AuthenticateAsync(StringValues authorization, CancellationToken cancellation) =>
        ValueTask.FromResult(AuthenticationResult.Anonymous);
}
