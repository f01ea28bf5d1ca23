using System.Globalization;
using System.Net;
using System.Text.Json;
using k8s;
using k8s.Autorest;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Attestation;

/// <summary>
/// Attests a sidecar by its pod's projected service-account token (SPIRE's <c>k8s_psat</c>, for workloads):
/// 1. a TokenReview (<c>authentication.k8s.io/v1</c>) with <c>spec.audiences</c> = [<c>--token-audience</c>]: the API
///    server checks the signature, expiry and audience, and that what the token is bound to still exists; a review that
///    does not authenticate is refused with the review's own error;
/// 2. the identity comes from the review's user, <c>system:serviceaccount:&lt;ns&gt;:&lt;sa&gt;</c> →
///    <c>spiffe://&lt;td&gt;/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>, never from the CSR (which <c>accept</c> then holds to it);
/// 3. the token must be bound to a pod (<c>user.extra</c> pod-name and pod-uid): a legacy Secret token, or one from
///    <c>kubectl create token</c>, proves a service account but not a running pod, and is refused;
/// 4. that pod is read from the API and must exist with the same UID (not a later pod of the same name), run as that
///    service account, and be neither terminated (phase Succeeded or Failed) nor terminating (deletionTimestamp set):
///    the API server may answer a review from its token cache for a few seconds after the pod is gone.
/// Tokens are reusable: a restarted sidecar attests again with the token kubelet keeps fresh. When the API cannot be
/// asked (unreachable, no answer in time, 5xx, 429, or the control plane's own call refused), the attestation is
/// <see cref="AttestationUnavailableException"/>: the sidecar retries, and nothing is issued.
/// </summary>
internal sealed class ServiceAccountTokenAttestor(IKubernetes kubernetes, ControlPlaneOptions options) : IAttestor
{
    /// <summary>The longest one API call may take; the sidecar gives the whole signing call 10 s.</summary>
    public static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);

    public const string ServiceAccountUserPrefix = "system:serviceaccount:";
    public const string PodNameExtra = "authentication.kubernetes.io/pod-name";
    public const string PodUidExtra = "authentication.kubernetes.io/pod-uid";

    public string Kind => ServiceAccountTokenProof.KindName;

    public async ValueTask<SpiffeId> AttestAsync(IdentityProof proof, Action<SpiffeId> accept, CancellationToken cancellation)
    {
        var audience = options.TokenAudience;
        var request = new V1TokenReview
        {
            ApiVersion = "authentication.k8s.io/v1",
            Kind = "TokenReview",
            Spec = new V1TokenReviewSpec { Token = ((ServiceAccountTokenProof)proof).Token, Audiences = [audience] },
        };
        var review = await CallAsync("create a TokenReview", notFoundIsAnswer: false, call => kubernetes.AuthenticationV1.CreateTokenReviewAsync(request, cancellationToken: call), cancellation);
        var status = review.Status ?? throw new AttestationUnavailableException("cannot check the service account token: the TokenReview came back without a status");
        if (status.Authenticated != true)
        {
            throw Unauthenticated($"the Kubernetes API did not authenticate the service account token for audience '{audience}': {(string.IsNullOrEmpty(status.Error) ? "no reason given" : status.Error)}");
        }
        if (status.Audiences is not { } audiences || !audiences.Contains(audience, StringComparer.Ordinal))
        {
            // The API server answers with the audiences it verified; one that ignored spec.audiences proves nothing for us.
            throw Unauthenticated($"the TokenReview authenticated the token for audiences [{string.Join(", ", status.Audiences ?? [])}], not for '{audience}'");
        }

        var username = status.User?.Username ?? "";
        var (ns, serviceAccount) = ServiceAccountOf(username);
        if (!SpiffeId.TryParse($"{SpiffeId.Scheme}{options.TrustDomain}/ns/{ns}/sa/{serviceAccount}", out var id, out var invalid))
        {
            throw Unauthenticated($"the service account {ns}/{serviceAccount} does not make a SPIFFE ID: {invalid}");
        }
        if (Single(status.User!, PodNameExtra) is not { } podName || Single(status.User!, PodUidExtra) is not { } podUid)
        {
            throw Unauthenticated(
                $"the service account token of {ns}/{serviceAccount} is not bound to a pod (a legacy Secret token, or one from 'kubectl create token'): "
                + $"the sidecar needs its pod's projected service-account token for audience '{audience}', as the injector mounts it");
        }

        V1Pod pod;
        try
        {
            pod = await CallAsync($"read pod {ns}/{podName}", notFoundIsAnswer: true, call => kubernetes.CoreV1.ReadNamespacedPodAsync(podName, ns, cancellationToken: call), cancellation);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            throw PermissionDenied($"the token's pod {ns}/{podName} no longer exists: it was deleted");
        }
        if (pod.Metadata?.Uid != podUid)
        {
            throw PermissionDenied($"the token was issued to an earlier pod {ns}/{podName} (uid {podUid}); the pod of that name now is uid {pod.Metadata?.Uid}");
        }
        var podServiceAccount = string.IsNullOrEmpty(pod.Spec?.ServiceAccountName) ? "default" : pod.Spec.ServiceAccountName;
        if (podServiceAccount != serviceAccount)
        {
            throw PermissionDenied($"the pod {ns}/{podName} runs as service account '{podServiceAccount}', not '{serviceAccount}' whose token it presented");
        }
        if (pod.Metadata.DeletionTimestamp is { } deleting)
        {
            throw PermissionDenied($"the pod {ns}/{podName} is terminating (deletionTimestamp {deleting.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)})");
        }
        if (pod.Status?.Phase is "Succeeded" or "Failed")
        {
            throw PermissionDenied($"the pod {ns}/{podName} has terminated (phase {pod.Status.Phase})");
        }

        accept(id);
        return id;
    }

    /// <summary>(namespace, service account) of a review's username, or a refusal when it is not a service account's.</summary>
    private static (string Namespace, string ServiceAccount) ServiceAccountOf(string username)
    {
        var parts = username.StartsWith(ServiceAccountUserPrefix, StringComparison.Ordinal)
            ? username[ServiceAccountUserPrefix.Length..].Split(':')
            : [];
        return parts is [{ Length: > 0 } ns, { Length: > 0 } sa]
            ? (ns, sa)
            : throw Unauthenticated($"the token is not a service account's: the TokenReview names user '{username}'");
    }

    private static string? Single(V1UserInfo user, string key) =>
        user.Extra is { } extra && extra.TryGetValue(key, out var values) && values is [{ Length: > 0 } value] ? value : null;

    /// <summary>
    /// One API call with its own deadline. Any failure to get an answer is <see cref="AttestationUnavailableException"/>;
    /// a 404 is left to the caller when it is an answer (<paramref name="notFoundIsAnswer"/>: the object does not exist).
    /// </summary>
    private async Task<T> CallAsync<T>(string what, bool notFoundIsAnswer, Func<CancellationToken, Task<T>> call, CancellationToken cancellation)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        deadline.CancelAfter(CallTimeout);
        try
        {
            return await call(deadline.Token);
        }
        catch (HttpOperationException e) when (!(notFoundIsAnswer && e.Response.StatusCode == HttpStatusCode.NotFound))
        {
            var code = (int)e.Response.StatusCode;
            var hint = code is 401 or 403 ? $" (the control plane's own credentials or RBAC: it needs {RbacHint(what)})" : "";
            throw Unavailable(what, $"answered {code} {e.Response.StatusCode}: {StatusMessage(e.Response.Content)}{hint}", e);
        }
        catch (OperationCanceledException e) when (!cancellation.IsCancellationRequested)
        {
            throw Unavailable(what, $"did not answer within {CallTimeout.TotalSeconds:0} s", e);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException)
        {
            throw Unavailable(what, $"could not be reached at {kubernetes.BaseUri.GetLeftPart(UriPartial.Authority)}: {e.Message}", e);
        }
    }

    private static string RbacHint(string what) => what.StartsWith("create a TokenReview", StringComparison.Ordinal)
        ? "create on tokenreviews.authentication.k8s.io"
        : "get on pods";

    private static AttestationUnavailableException Unavailable(string what, string failure, Exception inner) =>
        new($"cannot check the service account token now: the Kubernetes API, asked to {what}, {failure}; the sidecar retries", inner);

    /// <summary>The message of a <c>metav1.Status</c> body, else the body itself (shortened).</summary>
    private static string StatusMessage(string? body)
    {
        if (string.IsNullOrWhiteSpace(body))
        {
            return "no body";
        }
        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.String)
            {
                return message.GetString()!;
            }
        }
        catch (JsonException)
        {
        }
        return body.Length <= 200 ? body.Trim() : body[..200].Trim() + "…";
    }

    private static IssuanceRefusedException Unauthenticated(string reason) => new(RefusalKind.Unauthenticated, reason);

    private static IssuanceRefusedException PermissionDenied(string reason) => new(RefusalKind.PermissionDenied, reason);
}
