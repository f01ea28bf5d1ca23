using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace ZeroTrustMesh.KubernetesDouble;

/// <summary>A service-account token the double issued, and what the API server knows of it.</summary>
/// <param name="Audiences">Empty for a legacy token: it is valid for the API server's own audience only.</param>
/// <param name="PodName">The pod it is bound to (kubelet's projected tokens), or null (unbound or legacy).</param>
public sealed record IssuedServiceAccountToken(
    string Token, string Namespace, string ServiceAccount, IReadOnlyList<string> Audiences, DateTimeOffset? ExpiresAt, string? PodName, string? PodUid, string? NodeName)
{
    public string Username => $"system:serviceaccount:{Namespace}:{ServiceAccount}";

    /// <summary>A token is a secret: never printed.</summary>
    public override string ToString() => $"service-account token of {Namespace}/{ServiceAccount}{(PodName is null ? "" : $" bound to pod {PodName}")}";
}

/// <summary>
/// Service-account tokens and TokenReview (<c>authentication.k8s.io/v1</c>), as the API server answers them:
/// 1. the token must be one the double issued, and unexpired;
/// 2. its audiences (a legacy token's: the API server's own, <see cref="ApiServerAudience"/>) must meet
///    <c>spec.audiences</c> (none given: the API server's); <c>status.audiences</c> is what they share;
/// 3. a pod-bound token's pod must still exist with the same UID (<see cref="ChecksBoundPods"/>);
/// 4. then <c>status.user</c> is the service account's (<c>system:serviceaccount:&lt;ns&gt;:&lt;sa&gt;</c>, its groups),
///    with <c>extra</c> pod-name, pod-uid (and node-name) for a pod-bound token and credential-id for any but a legacy one.
/// A failed check is <c>authenticated: false</c> with the API server's error text. The service account object itself is not checked.
/// </summary>
public sealed partial class KubernetesApiDouble
{
    /// <summary>The API server's own audience, which legacy tokens (and reviews without <c>spec.audiences</c>) have.</summary>
    public const string ApiServerAudience = "https://kubernetes.default.svc.cluster.local";

    private readonly Dictionary<string, IssuedServiceAccountToken> _tokens = new(StringComparer.Ordinal);
    private readonly Dictionary<string, JsonObject> _cannedReviews = new(StringComparer.Ordinal);

    /// <summary>
    /// Whether a review checks that a pod-bound token's pod still exists with that UID, as the API server does (default).
    /// False answers as the API server's authentication cache may for a few seconds after the pod is gone.
    /// </summary>
    public bool ChecksBoundPods { get; set; } = true;

    /// <summary>
    /// The projected token kubelet mounts in a pod (a TokenRequest bound to the pod): for the pod's service account
    /// (<c>spec.serviceAccountName</c>, else <c>default</c>), bound to its name and UID. The pod must be stored.
    /// </summary>
    public string IssuePodToken(string ns, string podName, string audience, TimeSpan? lifetime = null)
    {
        var pod = Get("v1", "pods", ns, podName) ?? throw new ArgumentException($"pod {ns}/{podName} is not stored", nameof(podName));
        var serviceAccount = Text(pod["spec"]?["serviceAccountName"]) is { Length: > 0 } name ? name : "default";
        var uid = Text(pod["metadata"]?["uid"])!;
        return Issue(ns, serviceAccount, [audience], DateTimeOffset.UtcNow + (lifetime ?? TimeSpan.FromHours(1)), podName, uid, Text(pod["spec"]?["nodeName"]));
    }

    /// <summary>A token bound to no object, as <c>kubectl create token SA --audience A</c> makes.</summary>
    public string IssueToken(string ns, string serviceAccount, IEnumerable<string> audiences, TimeSpan? lifetime = null) =>
        Issue(ns, serviceAccount, [.. audiences], DateTimeOffset.UtcNow + (lifetime ?? TimeSpan.FromHours(1)), null, null, null);

    /// <summary>A legacy token (a <c>kubernetes.io/service-account-token</c> Secret's): no audience, no expiry, no binding.</summary>
    public string IssueLegacyToken(string ns, string serviceAccount) => Issue(ns, serviceAccount, [], null, null, null, null);

    /// <summary>
    /// Answers every review of <paramref name="token"/> with exactly <paramref name="status"/>: what another token
    /// authenticator of the cluster (OIDC, a webhook) would answer, or an API server that ignored <c>spec.audiences</c>.
    /// </summary>
    public void AnswerReview(string token, JsonObject status)
    {
        lock (_gate)
        {
            _cannedReviews[token] = (JsonObject)status.DeepClone();
        }
    }

    /// <summary>Makes a token expired from now on (kubelet would have replaced it).</summary>
    public void ExpireToken(string token)
    {
        lock (_gate)
        {
            _tokens[token] = _tokens[token] with { ExpiresAt = DateTimeOffset.UtcNow.AddSeconds(-1) };
        }
    }

    private string Issue(string ns, string serviceAccount, string[] audiences, DateTimeOffset? expiresAt, string? podName, string? podUid, string? nodeName)
    {
        // Shaped like the real thing (a JWT with the kubernetes.io claims) so it reads as one in files and logs; the
        // double knows its tokens by their whole text, so the signature is random.
        var claims = new JsonObject
        {
            ["aud"] = new JsonArray([.. audiences.Select(a => (JsonNode?)a)]),
            ["iss"] = ApiServerAudience,
            ["sub"] = $"system:serviceaccount:{ns}:{serviceAccount}",
            ["kubernetes.io"] = new JsonObject
            {
                ["namespace"] = ns,
                ["serviceaccount"] = new JsonObject { ["name"] = serviceAccount },
                ["pod"] = podName is null ? null : new JsonObject { ["name"] = podName, ["uid"] = podUid },
            },
        };
        if (expiresAt is { } exp)
        {
            claims["exp"] = exp.ToUnixTimeSeconds();
        }
        var token = string.Join('.', Base64Url("""{"alg":"RS256","kid":"double"}"""u8.ToArray()), Base64Url(Encoding.UTF8.GetBytes(claims.ToJsonString())), Base64Url(RandomNumberGenerator.GetBytes(64)));
        lock (_gate)
        {
            _tokens[token] = new IssuedServiceAccountToken(token, ns, serviceAccount, audiences, expiresAt, podName, podUid, nodeName);
        }
        return token;
    }

    /// <summary>A TokenReview created: answered (201), never stored. Called under the gate.</summary>
    private (int, JsonObject) Review(JsonObject review)
    {
        var spec = review["spec"] as JsonObject ?? new JsonObject();
        var token = Text(spec["token"]) ?? "";
        var requested = spec["audiences"] is JsonArray given && given.Count > 0 ? given.Select(Text).OfType<string>().ToArray() : [ApiServerAudience];
        var status = new JsonObject { ["user"] = new JsonObject() };
        var answer = new JsonObject
        {
            ["kind"] = "TokenReview",
            ["apiVersion"] = "authentication.k8s.io/v1",
            ["metadata"] = new JsonObject { ["creationTimestamp"] = null },
            ["spec"] = spec.DeepClone(),
            ["status"] = status,
        };
        if (_cannedReviews.TryGetValue(token, out var canned))
        {
            answer["status"] = canned.DeepClone();
            return (201, answer);
        }
        if (Authenticate(token, requested, out var issued, out var audiences) is { } error)
        {
            status["error"] = error;
            return (201, answer);
        }
        var extra = new JsonObject();
        if (issued.PodName is not null)
        {
            extra["authentication.kubernetes.io/pod-name"] = new JsonArray(issued.PodName);
            extra["authentication.kubernetes.io/pod-uid"] = new JsonArray(issued.PodUid);
            if (issued.NodeName is not null)
            {
                extra["authentication.kubernetes.io/node-name"] = new JsonArray(issued.NodeName);
            }
        }
        if (issued.Audiences.Count > 0)
        {
            extra["authentication.kubernetes.io/credential-id"] = new JsonArray($"JTI={Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)))[..32]}");
        }
        status["authenticated"] = true;
        status["user"] = new JsonObject
        {
            ["username"] = issued.Username,
            ["uid"] = Text(_objects.GetValueOrDefault(Key("", "serviceaccounts", issued.Namespace, issued.ServiceAccount))?["metadata"]?["uid"]) ?? "",
            ["groups"] = new JsonArray("system:serviceaccounts", $"system:serviceaccounts:{issued.Namespace}", "system:authenticated"),
            ["extra"] = extra.Count > 0 ? extra : null,
        };
        status["audiences"] = new JsonArray([.. audiences.Select(a => (JsonNode?)a)]);
        return (201, answer);
    }

    /// <summary>Null when <paramref name="token"/> authenticates for some of <paramref name="requested"/>; else the API server's error.</summary>
    private string? Authenticate(string token, string[] requested, out IssuedServiceAccountToken issued, out string[] audiences)
    {
        audiences = [];
        if (!_tokens.TryGetValue(token, out issued!))
        {
            return "invalid bearer token";
        }
        if (issued.ExpiresAt is { } expiresAt && expiresAt <= DateTimeOffset.UtcNow)
        {
            return "service account token has expired";
        }
        string[] tokenAudiences = issued.Audiences.Count > 0 ? [.. issued.Audiences] : [ApiServerAudience];
        audiences = [.. tokenAudiences.Intersect(requested, StringComparer.Ordinal)];
        if (audiences.Length == 0)
        {
            return $"token audiences {GoQuoted(tokenAudiences)} is invalid for the target audiences {GoQuoted(requested)}";
        }
        if (ChecksBoundPods && issued.PodName is { } podName)
        {
            var pod = _objects.GetValueOrDefault(Key("", "pods", issued.Namespace, podName));
            if (pod is null)
            {
                return $"pods \"{podName}\" not found";
            }
            if (Text(pod["metadata"]?["uid"]) is var uid && uid != issued.PodUid)
            {
                return $"pod UID ({uid}) does not match claim ({issued.PodUid})";
            }
        }
        return null;
    }

    /// <summary>Go's <c>%q</c> of a string slice: <c>["a" "b"]</c>.</summary>
    private static string GoQuoted(IEnumerable<string> values) => $"[{string.Join(' ', values.Select(v => $"\"{v}\""))}]";

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
