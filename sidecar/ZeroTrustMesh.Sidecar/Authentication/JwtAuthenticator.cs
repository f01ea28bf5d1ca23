using System.Collections.Frozen;
using Microsoft.Extensions.Primitives;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Sidecar.Authentication;

/// <summary>
/// The JWT rules of one snapshot, by issuer. A bearer token is checked in this order:
/// 1. it is a well-formed JWS compact token;
/// 2. its (unverified) <c>iss</c> names a configured issuer — the issuer picks the keys;
/// 3. the issuer's keys: inline, or the remote JWKS (cached; a key id we lack triggers one re-fetch);
/// 4. signature (asymmetric algorithms only), issuer, audience (when the rule names any), lifetime with
///    <see cref="ClockSkew"/>, on the sidecar's clock;
/// 5. the payload's claims become the request's claims, and the rule says whether the token goes on to the app.
/// Refusal reasons follow Envoy's wording so they read the same as in Istio.
/// </summary>
internal sealed class JwtAuthenticator : IRequestAuthenticator
{
    public static readonly TimeSpan ClockSkew = TimeSpan.FromSeconds(30);

    private static readonly string[] AsymmetricAlgorithms =
    [
        SecurityAlgorithms.RsaSha256, SecurityAlgorithms.RsaSha384, SecurityAlgorithms.RsaSha512,
        SecurityAlgorithms.RsaSsaPssSha256, SecurityAlgorithms.RsaSsaPssSha384, SecurityAlgorithms.RsaSsaPssSha512,
        SecurityAlgorithms.EcdsaSha256, SecurityAlgorithms.EcdsaSha384, SecurityAlgorithms.EcdsaSha512,
    ];

    private readonly FrozenDictionary<string, IssuerRule> _issuers;
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };

    private JwtAuthenticator(FrozenDictionary<string, IssuerRule> issuers) => _issuers = issuers;

    public int IssuerCount => _issuers.Count;

    /// <summary>
    /// Compiles the RequestAuthentications that select <paramref name="workload"/>. Inline JWKS are parsed now, so a
    /// bad one refuses the snapshot; remote ones start fetching in the background and never refuse it.
    /// </summary>
    /// <exception cref="ArgumentException">An inline JWKS is unusable, or two resources configure one issuer differently.</exception>
    public static IRequestAuthenticator Compile(WorkloadRef workload, IEnumerable<RequestAuthentication> resources, JwksCache cache, TimeProvider time)
    {
        var issuers = new Dictionary<string, IssuerRule>(StringComparer.Ordinal);
        var errors = new List<string>();
        foreach (var resource in resources.Where(r => r.AppliesTo(workload)).OrderBy(r => r.Metadata.Name, StringComparer.Ordinal))
        {
            var name = $"{resource.Metadata.Namespace}/{resource.Metadata.Name}";
            var rules = resource.Spec.JwtRules.IsDefault ? [] : resource.Spec.JwtRules;
            for (var i = 0; i < rules.Length; i++)
            {
                var rule = rules[i];
                if (issuers.ContainsKey(rule.Issuer))
                {
                    errors.Add($"RequestAuthentication {name} jwtRules[{i}]: issuer '{rule.Issuer}' is configured twice for this workload");
                    continue;
                }
                IKeySource keys;
                if (rule.Jwks is { } inline)
                {
                    var parsed = JwksKeys.Parse(inline, time.GetUtcNow(), out var error);
                    if (parsed is null)
                    {
                        errors.Add($"RequestAuthentication {name} jwtRules[{i}].jwks: {error}");
                        continue;
                    }
                    keys = new InlineKeys(parsed);
                }
                else
                {
                    keys = new RemoteKeys(cache.Get(new Uri(rule.JwksUri!, UriKind.Absolute)));
                }
                var audiences = rule.Audiences.IsDefault ? [] : rule.Audiences;
                issuers.Add(rule.Issuer, new IssuerRule(rule.Issuer, [.. audiences], keys, time) { ForwardOriginalToken = rule.ForwardOriginalToken });
            }
        }
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", errors));
        }
        return issuers.Count == 0 ? NoRequestAuthentication.Instance : new JwtAuthenticator(issuers.ToFrozenDictionary(StringComparer.Ordinal));
    }

    /// <summary>The JWKS URIs this authenticator reads, so the cache can drop the others.</summary>
    public static IReadOnlySet<string> RemoteUris(IRequestAuthenticator authenticator) =>
        authenticator is JwtAuthenticator jwt
            ? jwt._issuers.Values.Select(i => i.Keys).OfType<RemoteKeys>().Select(k => k.Source.Uri.AbsoluteUri).ToHashSet(StringComparer.Ordinal)
            : new HashSet<string>();

    public async ValueTask<AuthenticationResult> AuthenticateAsync(StringValues authorization, CancellationToken cancellation)
    {
        string? token = null;
        foreach (var value in authorization)
        {
            if (value is not null && value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                if (token is not null)
                {
                    return AuthenticationResult.Refused("more than one bearer token");
                }
                token = value["Bearer ".Length..].Trim();
            }
        }
        if (token is null)
        {
            return AuthenticationResult.Anonymous; // no token: unauthenticated, for the policy to decide
        }

        JsonWebToken jwt;
        try
        {
            jwt = _handler.ReadJsonWebToken(token);
        }
        catch (Exception e) when (e is ArgumentException or SecurityTokenMalformedException)
        {
            return AuthenticationResult.Refused("Jwt is not in the form of Header.Payload.Signature");
        }
        if (jwt.IsEncrypted)
        {
            return AuthenticationResult.Refused("Jwt is encrypted; only signed tokens are accepted");
        }
        string issuer;
        try
        {
            issuer = jwt.Issuer;
        }
        catch (ArgumentException)
        {
            return AuthenticationResult.Refused("Jwt issuer is not a string");
        }
        if (!_issuers.TryGetValue(issuer, out var rule))
        {
            return AuthenticationResult.Refused("Jwt issuer is not configured");
        }

        var (keys, keyError) = await rule.Keys.GetAsync(cancellation);
        if (keys is null)
        {
            return AuthenticationResult.Refused($"Jwks of issuer {issuer} are unavailable: {keyError}");
        }
        var result = await _handler.ValidateTokenAsync(jwt, rule.Parameters(keys));
        if (!result.IsValid && result.Exception is SecurityTokenSignatureKeyNotFoundException && rule.Keys is RemoteKeys remote)
        {
            // The issuer may have rotated its keys since we fetched them.
            var refreshed = await remote.Source.RefetchForUnknownKeyAsync(cancellation);
            if (refreshed is not null && !ReferenceEquals(refreshed, keys))
            {
                result = await _handler.ValidateTokenAsync(jwt, rule.Parameters(refreshed));
            }
        }
        return result.IsValid
            ? new AuthenticationResult(JwtClaims.Decode(token), null, rule.ForwardOriginalToken)
            : AuthenticationResult.Refused(Reason(result.Exception));
    }

    private static string Reason(Exception? exception) => exception switch
    {
        SecurityTokenExpiredException => "Jwt is expired",
        SecurityTokenNotYetValidException => "Jwt not yet valid",
        SecurityTokenNoExpirationException => "Jwt has no expiration (exp)",
        SecurityTokenInvalidLifetimeException => "Jwt lifetime is not valid",
        SecurityTokenInvalidAudienceException => "Audiences in Jwt are not allowed",
        SecurityTokenInvalidIssuerException => "Jwt issuer is not configured",
        SecurityTokenInvalidAlgorithmException => "Jwt algorithm is not allowed",
        SecurityTokenInvalidSignatureException or SecurityTokenSignatureKeyNotFoundException => "Jwt verification fails",
        SecurityTokenMalformedException or ArgumentException => "Jwt is not in the form of Header.Payload.Signature",
        _ => "Jwt verification fails",
    };

    private interface IKeySource
    {
        ValueTask<(JwksKeys? Keys, string? Error)> GetAsync(CancellationToken cancellation);
    }

    private sealed class InlineKeys(JwksKeys keys) : IKeySource
    {
        public ValueTask<(JwksKeys? Keys, string? Error)> GetAsync(CancellationToken cancellation) => ValueTask.FromResult<(JwksKeys?, string?)>((keys, null));
    }

    private sealed class RemoteKeys(JwksSource source) : IKeySource
    {
        public JwksSource Source => source;

        public ValueTask<(JwksKeys? Keys, string? Error)> GetAsync(CancellationToken cancellation) => source.GetAsync(cancellation);
    }

    /// <summary>One issuer; its validation parameters are built once per key set, not per request.</summary>
    private sealed class IssuerRule(string issuer, string[] audiences, IKeySource keys, TimeProvider time)
    {
        private Cached? _cached;

        public IKeySource Keys => keys;

        public bool ForwardOriginalToken { get; init; }

        public TokenValidationParameters Parameters(JwksKeys current)
        {
            if (Volatile.Read(ref _cached) is { } cached && ReferenceEquals(cached.Keys, current))
            {
                return cached.Parameters;
            }
            var parameters = new TokenValidationParameters
            {
                ValidIssuer = issuer,
                ValidateIssuer = true,
                ValidAudiences = audiences,
                ValidateAudience = audiences.Length > 0,
                IssuerSigningKeys = current.Keys,
                ValidateIssuerSigningKey = false, // keys are trusted by configuration, not by a certificate chain
                ValidAlgorithms = AsymmetricAlgorithms,
                RequireSignedTokens = true,
                RequireExpirationTime = true,
                ValidateLifetime = true,
                ClockSkew = ClockSkew,
                LifetimeValidator = ValidateLifetime, // on the sidecar's TimeProvider, not the wall clock
                SaveSigninToken = false,
                TryAllIssuerSigningKeys = true,
            };
            Volatile.Write(ref _cached, new Cached(current, parameters));
            return parameters;
        }

        private bool ValidateLifetime(DateTime? notBefore, DateTime? expires, SecurityToken token, TokenValidationParameters parameters)
        {
            var now = time.GetUtcNow().UtcDateTime;
            if (expires is null)
            {
                throw new SecurityTokenNoExpirationException("the token has no exp claim");
            }
            if (notBefore is { } nbf && nbf > now + ClockSkew)
            {
                throw new SecurityTokenNotYetValidException("the token is not valid yet") { NotBefore = nbf };
            }
            if (expires.Value < now - ClockSkew)
            {
                throw new SecurityTokenExpiredException("the token has expired") { Expires = expires.Value };
            }
            return true;
        }

        private sealed record Cached(JwksKeys Keys, TokenValidationParameters Parameters);
    }
}
