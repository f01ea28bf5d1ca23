using System.Globalization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Authentication;

/// <summary>
/// RequestAuthentication, enforced (compiled only when a resource selects the workload): a bearer token must be valid for
/// a configured issuer (signature, issuer, audience, lifetime), else 401 with the reason; its claims become the request's
/// claims, and it is removed before the app unless its rule says <c>forwardOriginalToken</c>. No token passes
/// unauthenticated, for the authorization stage to decide.
/// </summary>
internal sealed class RequestAuthenticationStage(IRequestAuthenticator authenticator, SidecarMetrics metrics) : IInboundStage
{
    public IRequestAuthenticator Authenticator => authenticator;

    public string Summary => $"{authenticator.IssuerCount.ToString(CultureInfo.InvariantCulture)} issuer(s)";

    public async ValueTask<StageResult> RunAsync(InboundRequest request, CancellationToken cancellation)
    {
        var result = await authenticator.AuthenticateAsync(request.Headers.Authorization, cancellation);
        if (result.Failed)
        {
            metrics.Authenticated(valid: false);
            return StageResult.Refuse(new Refusal(StatusCodes.Status401Unauthorized, "jwt_invalid", $"Jwt authentication failed: {result.Error}")
            {
                Header = ("WWW-Authenticate", "Bearer error=\"invalid_token\""),
            });
        }
        if (result.Claims is not null)
        {
            metrics.Authenticated(valid: true);
            request.Claims = result.Claims;
            // As in Istio: the token has done its work here; the app gets no credential it could replay elsewhere.
            request.RemoveAuthorization = !result.ForwardOriginalToken;
        }
        return StageResult.Continue;
    }
}

internal sealed class RequestAuthenticationStageKind(JwksCache jwks, TimeProvider time, SidecarMetrics metrics) : IInboundStageKind
{
    public PolicyKind Kind => RequestAuthenticationKind.Instance;

    public int Order => InboundStageOrder.RequestAuthentication;

    /// <summary>Inline JWKS are parsed now, so a bad one refuses the config; remote ones are fetched in the background.</summary>
    public IInboundStage? Compile(IReadOnlyList<PolicyResource> resources, StageContext context) =>
        resources.Count == 0 ? null
            : new RequestAuthenticationStage(JwtAuthenticator.Compile(context.Workload, resources.Cast<RequestAuthentication>(), jwks, time), metrics);

    /// <summary>Once a snapshot is enforced, remote JWKS that no stage reads any more are dropped from the cache.</summary>
    public void Applied(IInboundStage? stage) =>
        jwks.Retain(stage is RequestAuthenticationStage own ? JwtAuthenticator.RemoteUris(own.Authenticator) : new HashSet<string>());
}
