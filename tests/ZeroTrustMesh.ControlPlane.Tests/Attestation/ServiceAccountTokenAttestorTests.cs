using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Grpc.Core;
using k8s;
using k8s.Models;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Prometheus;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.KubernetesDouble;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.Attestation;

/// <summary>
/// Signing with a projected service-account token, through the Identity API, against the Kubernetes API double: the
/// identity is exactly the TokenReview's user; every refusal has its gRPC status, its message and one log line; an API
/// server that cannot answer is UNAVAILABLE and issues nothing; the token never reaches a log.
/// </summary>
public sealed class ServiceAccountTokenAttestorTests : IAsyncLifetime
{
    private const string Audience = ControlPlaneOptions.DefaultTokenAudience;
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";

    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-psat-").FullName;
    private readonly CollectingLogs _logs = new();
    private readonly List<string> _tokens = [];
    private KubernetesApiDouble _api = null!;
    private IKubernetes _client = null!;
    private ControlPlaneParts _parts = null!;

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        _client = _api.CreateClient();
        _parts = await ControlPlaneParts.StartAsync(_dir, TimeProvider.System, services => services.AddKubernetesAttestation(_ => _api.CreateClient()), _logs);
    }

    public async Task DisposeAsync()
    {
        // Whatever a test did, no token it used may be in any log line.
        foreach (var token in _tokens)
        {
            Assert.DoesNotContain(_logs.Lines, l => l.Contains(token, StringComparison.Ordinal) || l.Contains(token.Split('.')[^1], StringComparison.Ordinal));
        }
        await _parts.DisposeAsync();
        _client.Dispose();
        await _api.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_running_pods_token_gets_an_svid_for_exactly_the_reviews_identity_and_may_be_used_again()
    {
        SeedPod("orders-6f7c9", "orders");
        var token = Token(_api.IssuePodToken("shop", "orders-6f7c9", Audience));

        var response = await SignAsync(token, Csr(san: null));
        using var leaf = X509CertificateLoader.LoadCertificate(response.CertificateChain[0].ToByteArray());
        Assert.Equal(Orders, response.SpiffeId);
        Assert.Equal([Orders], SanUris(leaf));

        // A CSR that names the same identity is fine; the same token again (a restarted sidecar) is too: tokens are reusable.
        Assert.Equal(Orders, (await SignAsync(token, Csr(san: Orders))).SpiffeId);
        Assert.Equal(2, _logs.Lines.Count(l => l.StartsWith($"svid issued spiffe_id={Orders} ", StringComparison.Ordinal) && l.Contains(" via=service_account_token ", StringComparison.Ordinal)));
        Assert.Equal(2, await IssuedAsync("service_account_token"));

        // What the control plane asked: a TokenReview, then the pod.
        Assert.Equal(
            ["POST /apis/authentication.k8s.io/v1/tokenreviews 201", "GET /api/v1/namespaces/shop/pods/orders-6f7c9 200"],
            _api.Requests.Take(2).Select(r => $"{r.Method} {r.Path} {r.Status}"));
    }

    [Fact]
    public async Task A_csr_asking_for_another_identity_is_refused_as_with_a_join_token()
    {
        SeedPod("orders-6f7c9", "orders");
        var token = Token(_api.IssuePodToken("shop", "orders-6f7c9", Audience));

        await AssertRefusedAsync(token, StatusCode.PermissionDenied,
            $"the CSR asks for 'spiffe://cluster.local/ns/shop/sa/payments' but the caller proved '{Orders}'", Csr(san: "spiffe://cluster.local/ns/shop/sa/payments"));
        Assert.Equal(0, await IssuedAsync("service_account_token"));
    }

    [Fact]
    public async Task Join_tokens_keep_working_beside_service_account_tokens()
    {
        var (joinToken, _) = _parts.Get<IJoinTokenStore>().Create(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/batch"), TimeSpan.FromMinutes(5));

        var response = await new IdentityService(_parts.Get<SvidIssuer>()).SignCertificate(
            new SignCertificateRequest { Csr = ByteString.CopyFrom(Csr(san: null)), JoinToken = joinToken }, new TestCallContext("/ztm.v1.Identity/SignCertificate"));

        Assert.Equal("spiffe://cluster.local/ns/shop/sa/batch", response.SpiffeId);
        Assert.Equal(1, await IssuedAsync("join_token"));
    }

    [Fact]
    public async Task A_token_for_another_audience_is_unauthenticated_with_the_reviews_error()
    {
        SeedPod("orders-6f7c9", "orders");
        var token = Token(_api.IssuePodToken("shop", "orders-6f7c9", "vault"));

        await AssertRefusedAsync(token, StatusCode.Unauthenticated,
            $"the Kubernetes API did not authenticate the service account token for audience '{Audience}': token audiences [\"vault\"] is invalid for the target audiences [\"{Audience}\"]");
    }

    [Fact]
    public async Task An_expired_or_unknown_token_is_unauthenticated_with_the_reviews_error()
    {
        SeedPod("orders-6f7c9", "orders");
        var token = Token(_api.IssuePodToken("shop", "orders-6f7c9", Audience));
        _api.ExpireToken(token);

        await AssertRefusedAsync(token, StatusCode.Unauthenticated,
            $"the Kubernetes API did not authenticate the service account token for audience '{Audience}': service account token has expired");
        await AssertRefusedAsync(Token("eyJhbGciOiJSUzI1NiJ9.e30.bm90LWlzc3VlZA"), StatusCode.Unauthenticated,
            $"the Kubernetes API did not authenticate the service account token for audience '{Audience}': invalid bearer token", count: 2);
    }

    [Fact]
    public async Task A_legacy_secret_token_fails_the_audience_and_an_unbound_token_is_refused_for_not_naming_a_pod()
    {
        var legacy = Token(_api.IssueLegacyToken("shop", "orders"));
        await AssertRefusedAsync(legacy, StatusCode.Unauthenticated,
            $"the Kubernetes API did not authenticate the service account token for audience '{Audience}': token audiences [\"{KubernetesApiDouble.ApiServerAudience}\"] is invalid for the target audiences [\"{Audience}\"]");

        // kubectl create token orders --audience ztm-controlplane: authenticated, for our audience, but bound to no pod.
        var unbound = Token(_api.IssueToken("shop", "orders", [Audience]));
        await AssertRefusedAsync(unbound, StatusCode.Unauthenticated,
            "the service account token of shop/orders is not bound to a pod (a legacy Secret token, or one from 'kubectl create token'): "
            + $"the sidecar needs its pod's projected service-account token for audience '{Audience}', as the injector mounts it", count: 2);
    }

    [Fact]
    public async Task A_review_that_names_no_service_account_or_another_audience_is_unauthenticated()
    {
        // Another authenticator of the cluster (OIDC, a webhook) may authenticate a token as a person.
        _api.AnswerReview(Token("eyJhbGciOiJSUzI1NiJ9.e30.b2lkYw"), JsonNode.Parse($$"""{"authenticated": true, "user": {"username": "alice@example.com"}, "audiences": ["{{Audience}}"]}""")!.AsObject());
        await AssertRefusedAsync("eyJhbGciOiJSUzI1NiJ9.e30.b2lkYw", StatusCode.Unauthenticated, "the token is not a service account's: the TokenReview names user 'alice@example.com'");

        // An API server that ignored spec.audiences proves nothing for this control plane.
        _api.AnswerReview(Token("eyJhbGciOiJSUzI1NiJ9.e30.YXVk"), JsonNode.Parse("""{"authenticated": true, "user": {"username": "system:serviceaccount:shop:orders"}, "audiences": ["https://kubernetes.default.svc"]}""")!.AsObject());
        await AssertRefusedAsync("eyJhbGciOiJSUzI1NiJ9.e30.YXVk", StatusCode.Unauthenticated,
            $"the TokenReview authenticated the token for audiences [https://kubernetes.default.svc], not for '{Audience}'", count: 2);
    }

    [Fact]
    public async Task A_deleted_pods_token_is_refused_by_the_review_and_by_the_pod_lookup_when_the_review_is_cached()
    {
        SeedPod("orders-6f7c9", "orders");
        var token = Token(_api.IssuePodToken("shop", "orders-6f7c9", Audience));
        await _client.CoreV1.DeleteNamespacedPodAsync("orders-6f7c9", "shop");

        // The API server checks the pod a token is bound to.
        await AssertRefusedAsync(token, StatusCode.Unauthenticated,
            $"the Kubernetes API did not authenticate the service account token for audience '{Audience}': pods \"orders-6f7c9\" not found");

        // Its authentication cache may still say yes for a few seconds: the control plane's own lookup refuses.
        _api.ChecksBoundPods = false;
        await AssertRefusedAsync(token, StatusCode.PermissionDenied, "the token's pod shop/orders-6f7c9 no longer exists: it was deleted", count: 2);
    }

    [Fact]
    public async Task A_token_of_an_earlier_pod_with_the_same_name_is_refused_for_its_uid()
    {
        var earlier = SeedPod("orders-0", "orders");
        var token = Token(_api.IssuePodToken("shop", "orders-0", Audience));
        await _client.CoreV1.DeleteNamespacedPodAsync("orders-0", "shop");
        var now = SeedPod("orders-0", "orders"); // a StatefulSet's pod, recreated under its name
        _api.ChecksBoundPods = false;

        await AssertRefusedAsync(token, StatusCode.PermissionDenied,
            $"the token was issued to an earlier pod shop/orders-0 (uid {earlier}); the pod of that name now is uid {now}");
    }

    [Fact]
    public async Task A_pod_that_runs_as_another_service_account_is_refused()
    {
        SeedPod("orders-6f7c9", "orders");
        var token = Token(_api.IssuePodToken("shop", "orders-6f7c9", Audience));
        // The API server keeps spec.serviceAccountName immutable; the double lets a test break that to reach the check.
        await _client.CoreV1.PatchNamespacedPodAsync(new V1Patch("""{"spec":{"serviceAccountName":"payments"}}""", V1Patch.PatchType.MergePatch), "orders-6f7c9", "shop");

        await AssertRefusedAsync(token, StatusCode.PermissionDenied,
            "the pod shop/orders-6f7c9 runs as service account 'payments', not 'orders' whose token it presented");
    }

    [Theory]
    [InlineData("Succeeded", false, "the pod shop/orders-6f7c9 has terminated (phase Succeeded)")]
    [InlineData("Failed", false, "the pod shop/orders-6f7c9 has terminated (phase Failed)")]
    [InlineData("Running", true, "the pod shop/orders-6f7c9 is terminating (deletionTimestamp 2026-12-06T12:00:00Z)")]
    public async Task A_terminated_or_terminating_pod_is_refused(string phase, bool deleting, string message)
    {
        SeedPod("orders-6f7c9", "orders", phase, deleting ? new DateTime(2026, 12, 6, 12, 0, 0, DateTimeKind.Utc) : null);
        var token = Token(_api.IssuePodToken("shop", "orders-6f7c9", Audience));

        await AssertRefusedAsync(token, StatusCode.PermissionDenied, message);
    }

    [Fact]
    public async Task An_api_server_answering_5xx_or_refusing_the_control_plane_is_unavailable_and_issues_nothing_until_it_answers()
    {
        SeedPod("orders-6f7c9", "orders");
        var token = Token(_api.IssuePodToken("shop", "orders-6f7c9", Audience));
        static bool TokenReviews(HttpRequest r) => r.Path.Value!.EndsWith("/tokenreviews", StringComparison.Ordinal);

        _api.Fail(TokenReviews, 1, 503, "ServiceUnavailable");
        await AssertUnavailableAsync(token, "cannot check the service account token now: the Kubernetes API, asked to create a TokenReview, answered 503 ServiceUnavailable: injected failure (503 ServiceUnavailable); the sidecar retries", 1);
        _api.Fail(r => r.Path.Value!.Contains("/pods/", StringComparison.Ordinal), 1, 500);
        await AssertUnavailableAsync(token, "cannot check the service account token now: the Kubernetes API, asked to read pod shop/orders-6f7c9, answered 500 InternalServerError: injected failure (500 InternalError); the sidecar retries", 2);
        _api.Fail(TokenReviews, 1, 403, "Forbidden");
        await AssertUnavailableAsync(token,
            "cannot check the service account token now: the Kubernetes API, asked to create a TokenReview, answered 403 Forbidden: injected failure (403 Forbidden) "
            + "(the control plane's own credentials or RBAC: it needs create on tokenreviews.authentication.k8s.io); the sidecar retries", 3);
        Assert.Equal(0, await IssuedAsync("service_account_token"));
        Assert.DoesNotContain(_logs.Lines, l => l.StartsWith("svid refused", StringComparison.Ordinal));

        // The sidecar's retry, once the API answers.
        Assert.Equal(Orders, (await SignAsync(token, Csr(san: null))).SpiffeId);
    }

    [Fact]
    public async Task An_api_server_that_does_not_answer_is_unavailable_after_the_call_timeout_before_the_sidecars_deadline()
    {
        SeedPod("orders-6f7c9", "orders");
        var token = Token(_api.IssuePodToken("shop", "orders-6f7c9", Audience));
        _api.Stall(r => r.Path.Value!.EndsWith("/tokenreviews", StringComparison.Ordinal), 1);

        var watch = System.Diagnostics.Stopwatch.StartNew();
        await AssertUnavailableAsync(token, "cannot check the service account token now: the Kubernetes API, asked to create a TokenReview, did not answer within 5 s; the sidecar retries", 1);
        Assert.InRange(watch.Elapsed, ServiceAccountTokenAttestor.CallTimeout - TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(9)); // the sidecar waits 10 s
    }

    [Fact]
    public async Task An_unreachable_api_server_is_unavailable()
    {
        var gone = await KubernetesApiDouble.StartAsync();
        var address = gone.Address.GetLeftPart(UriPartial.Authority);
        var dir = Directory.CreateTempSubdirectory("ztm-psat-gone-").FullName;
        try
        {
            using var client = gone.CreateClient();
            await using var parts = await ControlPlaneParts.StartAsync(dir, TimeProvider.System, services => services.AddKubernetesAttestation(_ => client), _logs);
            await gone.DisposeAsync(); // its port is closed from now on
            var service = new IdentityService(parts.Get<SvidIssuer>());

            var e = await Assert.ThrowsAsync<RpcException>(() => service.SignCertificate(
                new SignCertificateRequest { Csr = ByteString.CopyFrom(Csr(san: null)), ServiceAccountToken = Token("eyJhbGciOiJSUzI1NiJ9.e30.dW5yZWFjaGVk") }, new TestCallContext("/ztm.v1.Identity/SignCertificate")));

            Assert.Equal(StatusCode.Unavailable, e.StatusCode);
            Assert.StartsWith($"cannot check the service account token now: the Kubernetes API, asked to create a TokenReview, could not be reached at {address}: ", e.Status.Detail, StringComparison.Ordinal);
            Assert.Single(_logs.Lines, l => l.StartsWith("svid not issued call=sign code=Unavailable reason=\"cannot check the service account token now", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A pod in namespace shop, as the API server stores it; returns its UID.</summary>
    private string SeedPod(string name, string serviceAccount, string phase = "Running", DateTime? deletionTimestamp = null)
    {
        var pod = _api.Seed(new V1Pod
        {
            ApiVersion = "v1",
            Kind = "Pod",
            Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = "shop", DeletionTimestamp = deletionTimestamp },
            Spec = new V1PodSpec { ServiceAccountName = serviceAccount, NodeName = "node-1", Containers = [new V1Container { Name = "app", Image = "orders:1" }] },
            Status = new V1PodStatus { Phase = phase },
        });
        return pod["metadata"]!["uid"]!.GetValue<string>();
    }

    private string Token(string token)
    {
        _tokens.Add(token);
        return token;
    }

    private Task<SignCertificateResponse> SignAsync(string token, byte[] csr) =>
        new IdentityService(_parts.Get<SvidIssuer>()).SignCertificate(
            new SignCertificateRequest { Csr = ByteString.CopyFrom(csr), ServiceAccountToken = token }, new TestCallContext("/ztm.v1.Identity/SignCertificate"));

    /// <summary>Refused with <paramref name="code"/> and exactly <paramref name="message"/>, logged once more (<paramref name="count"/> refusals so far).</summary>
    private async Task AssertRefusedAsync(string token, StatusCode code, string message, byte[]? csr = null, int count = 1)
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => SignAsync(token, csr ?? Csr(san: null)));
        Assert.Equal((code, message), (e.StatusCode, e.Status.Detail));
        var refused = _logs.Lines.Where(l => l.StartsWith("svid refused call=sign ", StringComparison.Ordinal)).ToList();
        Assert.Equal(count, refused.Count);
        Assert.Equal($"svid refused call=sign code={(code == StatusCode.Unauthenticated ? "Unauthenticated" : "PermissionDenied")} reason=\"{message}\" peer={TestCallContext.PeerAddress}", refused[^1]);
        Assert.Equal(0, await IssuedAsync("service_account_token"));
    }

    private async Task AssertUnavailableAsync(string token, string message, int count)
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => SignAsync(token, Csr(san: null)));
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.Equal(message, e.Status.Detail);
        var lines = _logs.Lines.Where(l => l.StartsWith("svid not issued call=sign code=Unavailable ", StringComparison.Ordinal)).ToList();
        Assert.Equal(count, lines.Count);
        Assert.Equal($"svid not issued call=sign code=Unavailable reason=\"{message}\" peer={TestCallContext.PeerAddress}", lines[^1]);
    }

    private async Task<double> IssuedAsync(string via)
    {
        using var stream = new MemoryStream();
        await _parts.Get<ControlPlaneMetrics>().Registry.CollectAndExportAsTextAsync(stream);
        var line = System.Text.Encoding.UTF8.GetString(stream.ToArray()).Split('\n').Single(l => l.StartsWith($"ztm_svid_issued_total{{via=\"{via}\"}} ", StringComparison.Ordinal));
        return double.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static byte[] Csr(string? san)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=ZeroTrustMesh", key, HashAlgorithmName.SHA256);
        if (san is not null)
        {
            request.CertificateExtensions.Add(SubjectAltNames.ForUri(san));
        }
        return request.CreateSigningRequest();
    }

    private static string[] SanUris(X509Certificate2 certificate) => [.. SubjectAltNames.From(certificate.Extensions.Cast<X509Extension>()).Uris];
}
