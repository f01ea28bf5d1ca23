using System.Net;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Kubernetes;

/// <summary>
/// The Kubernetes API double, driven by KubernetesClient's typed calls as the control plane drives a real server: the
/// JSON it writes and reads must be the real one, and errors must be <c>metav1.Status</c> with the API server's codes.
/// </summary>
public sealed class KubernetesApiDoubleTests : IAsyncLifetime
{
    private KubernetesApiDouble _api = null!;
    private IKubernetes _client = null!;

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        _client = _api.CreateClient();
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task Objects_are_created_read_listed_by_label_updated_and_deleted()
    {
        var created = await _client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("ztm-ca-root", "root"), "shop");
        Assert.Equal("shop", created.Metadata.NamespaceProperty);
        Assert.False(string.IsNullOrEmpty(created.Metadata.Uid));
        Assert.NotNull(created.Metadata.CreationTimestamp);

        created.Data["root-cert.pem"] = "rotated";
        var updated = await _client.CoreV1.ReplaceNamespacedConfigMapAsync(created, "ztm-ca-root", "shop");
        Assert.NotEqual(created.Metadata.ResourceVersion, updated.Metadata.ResourceVersion);
        Assert.Equal(created.Metadata.Uid, updated.Metadata.Uid);
        Assert.Equal("rotated", (await _client.CoreV1.ReadNamespacedConfigMapAsync("ztm-ca-root", "shop")).Data["root-cert.pem"]);

        await _client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "shop", Labels = new Dictionary<string, string> { ["ztm.dev/inject"] = "enabled" } } });
        await _client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "other" } });
        var selected = await _client.CoreV1.ListNamespaceAsync(labelSelector: "ztm.dev/inject=enabled");
        Assert.Equal("shop", Assert.Single(selected.Items).Metadata.Name);
        Assert.Equal(2, (await _client.CoreV1.ListNamespaceAsync()).Items.Count);
        Assert.Single((await _client.CoreV1.ListConfigMapForAllNamespacesAsync()).Items);

        await _client.CoreV1.DeleteNamespacedConfigMapAsync("ztm-ca-root", "shop");
        var gone = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.ReadNamespacedConfigMapAsync("ztm-ca-root", "shop"));
        AssertStatus(gone, HttpStatusCode.NotFound, "NotFound", "configmaps \"ztm-ca-root\" not found");
    }

    [Fact]
    public async Task Field_selectors_on_name_select_lists_and_watches_and_an_unknown_field_is_400()
    {
        await _client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("ztm-revocations", "a"), "ztm-system");
        await _client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("other", "b"), "ztm-system");
        var list = await _client.CoreV1.ListNamespacedConfigMapAsync("ztm-system", fieldSelector: "metadata.name=ztm-revocations");
        Assert.Equal("ztm-revocations", Assert.Single(list.Items).Metadata.Name);
        Assert.Single((await _client.CoreV1.ListNamespacedConfigMapAsync("ztm-system", fieldSelector: "metadata.name!=ztm-revocations")).Items);

        // A watch from the list's version sees changes of the selected object only.
        using var watching = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var seen = new List<string>();
        var watch = Task.Run(async () =>
        {
            await foreach (var (type, map) in _client.CoreV1.WatchListNamespacedConfigMapAsync("ztm-system", fieldSelector: "metadata.name=ztm-revocations",
                resourceVersion: list.Metadata.ResourceVersion, cancellationToken: watching.Token))
            {
                seen.Add($"{type} {map.Metadata.Name} {map.Data["root-cert.pem"]}");
                if (seen.Count == 1)
                {
                    return;
                }
            }
        });
        var other = await _client.CoreV1.ReadNamespacedConfigMapAsync("other", "ztm-system");
        other.Data["root-cert.pem"] = "b2";
        await _client.CoreV1.ReplaceNamespacedConfigMapAsync(other, "other", "ztm-system");
        var selected = await _client.CoreV1.ReadNamespacedConfigMapAsync("ztm-revocations", "ztm-system");
        selected.Data["root-cert.pem"] = "a2";
        await _client.CoreV1.ReplaceNamespacedConfigMapAsync(selected, "ztm-revocations", "ztm-system");
        await watch.WaitAsync(watching.Token);
        Assert.Equal(["Modified ztm-revocations a2"], seen);

        var unknown = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.ListNamespacedConfigMapAsync("ztm-system", fieldSelector: "spec.nodeName=a"));
        AssertStatus(unknown, HttpStatusCode.BadRequest, "BadRequest", "field label not supported: spec.nodeName");
    }

    [Fact]
    public async Task Creating_twice_is_409_AlreadyExists_and_a_stale_resourceVersion_is_409_Conflict()
    {
        var first = await _client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("settings", "a"), "shop");
        var twice = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("settings", "b"), "shop"));
        AssertStatus(twice, HttpStatusCode.Conflict, "AlreadyExists", "configmaps \"settings\" already exists");

        await _client.CoreV1.ReplaceNamespacedConfigMapAsync(ConfigMap("settings", "c", first.Metadata.ResourceVersion), "settings", "shop");
        var stale = await Assert.ThrowsAsync<HttpOperationException>(
            () => _client.CoreV1.ReplaceNamespacedConfigMapAsync(ConfigMap("settings", "d", first.Metadata.ResourceVersion), "settings", "shop"));
        AssertStatus(stale, HttpStatusCode.Conflict, "Conflict", "the object has been modified");
    }

    [Fact]
    public async Task Json_patch_and_merge_patch_apply_and_a_failed_test_is_422_Invalid()
    {
        await _client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("settings", "a"), "shop");

        var patched = await _client.CoreV1.PatchNamespacedConfigMapAsync(
            new V1Patch("""[{"op":"test","path":"/data/root-cert.pem","value":"a"},{"op":"add","path":"/data/extra","value":"x"}]""", V1Patch.PatchType.JsonPatch), "settings", "shop");
        Assert.Equal("x", patched.Data["extra"]);

        var merged = await _client.CoreV1.PatchNamespacedConfigMapAsync(
            new V1Patch("""{"data":{"extra":null,"more":"y"},"metadata":{"labels":{"a":"b"}}}""", V1Patch.PatchType.MergePatch), "settings", "shop");
        Assert.False(merged.Data.ContainsKey("extra"));
        Assert.Equal("y", merged.Data["more"]);
        Assert.Equal("b", merged.Metadata.Labels["a"]);

        var strategic = await _client.CoreV1.PatchNamespacedConfigMapAsync(
            new V1Patch("""{"data":{"more":"z"}}""", V1Patch.PatchType.StrategicMergePatch), "settings", "shop");
        Assert.Equal("z", strategic.Data["more"]);

        var failed = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.PatchNamespacedConfigMapAsync(
            new V1Patch("""[{"op":"test","path":"/data/more","value":"other"}]""", V1Patch.PatchType.JsonPatch), "settings", "shop"));
        AssertStatus(failed, HttpStatusCode.UnprocessableEntity, "Invalid", "test failed at /data/more");

        var stale = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.PatchNamespacedConfigMapAsync(
            new V1Patch("""{"metadata":{"resourceVersion":"1"},"data":{"more":"w"}}""", V1Patch.PatchType.MergePatch), "settings", "shop"));
        AssertStatus(stale, HttpStatusCode.Conflict, "Conflict", "the object has been modified");
    }

    [Fact]
    public async Task An_unsupported_patch_type_is_415_and_a_nameless_object_is_422()
    {
        await _client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("settings", "a"), "shop");

        var apply = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.PatchNamespacedConfigMapAsync(
            new V1Patch("""{"data":{}}""", V1Patch.PatchType.ApplyPatch), "settings", "shop", fieldManager: "ztm"));
        AssertStatus(apply, HttpStatusCode.UnsupportedMediaType, "UnsupportedMediaType", "application/apply-patch+yaml");

        var nameless = await Assert.ThrowsAsync<HttpOperationException>(
            () => _client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta() }, "shop"));
        AssertStatus(nameless, HttpStatusCode.UnprocessableEntity, "Invalid", "metadata.name: Required value");

        var generated = await _client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { GenerateName = "gen-" } }, "shop");
        Assert.StartsWith("gen-", generated.Metadata.Name, StringComparison.Ordinal);
        Assert.Equal(9, generated.Metadata.Name.Length);
    }

    [Fact]
    public async Task A_request_without_the_token_is_401_and_an_unknown_resource_is_404()
    {
        using var anonymous = new HttpClient(new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, certificate, _, _) => certificate is not null,
        });
        using var unauthorized = await anonymous.GetAsync(new Uri(_api.Address, "/api/v1/namespaces"));
        Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.StatusCode);
        Assert.Equal("Unauthorized", JsonNode.Parse(await unauthorized.Content.ReadAsStringAsync())!["reason"]!.GetValue<string>());

        var unknown = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.ReadNamespacedPodTemplateAsync("x", "shop"));
        AssertStatus(unknown, HttpStatusCode.NotFound, "NotFound", "could not find the requested resource");
    }

    [Fact]
    public async Task A_watch_streams_json_lines_from_its_resourceVersion_and_an_expired_one_gets_an_error_event_with_410()
    {
        await _client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("before", "1"), "shop");
        var from = _api.ResourceVersion;
        await _client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("after", "2"), "shop");
        await _client.CoreV1.DeleteNamespacedConfigMapAsync("before", "shop");
        using var http = new HttpClient(new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, certificate, _, _) => certificate is not null });
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", _api.Token);

        async Task<List<JsonObject>> WatchAsync(string resourceVersion, int count)
        {
            using var response = await http.GetAsync(new Uri(_api.Address, $"/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion={resourceVersion}&allowWatchBookmarks=true"), HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var events = new List<JsonObject>();
            while (events.Count < count && await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)) is { } line)
            {
                events.Add(JsonNode.Parse(line)!.AsObject());
                if (events.Count == 2)
                {
                    _api.SendBookmarks();
                }
            }
            return events;
        }

        var events = await WatchAsync(from, 3);
        Assert.Equal(["ADDED", "DELETED", "BOOKMARK"], events.Select(e => e["type"]!.GetValue<string>()));
        Assert.Equal("after", events[0]["object"]!["metadata"]!["name"]!.GetValue<string>());
        Assert.Equal("before", events[1]["object"]!["metadata"]!["name"]!.GetValue<string>());
        Assert.Equal(_api.ResourceVersion, events[1]["object"]!["metadata"]!["resourceVersion"]!.GetValue<string>()); // a delete is a new version
        Assert.Equal(_api.ResourceVersion, events[2]["object"]!["metadata"]!["resourceVersion"]!.GetValue<string>());

        _api.ExpireHistory();
        var expired = Assert.Single(await WatchAsync(from, 1));
        Assert.Equal("ERROR", expired["type"]!.GetValue<string>());
        Assert.Equal(("Status", 410, "Expired"), (expired["object"]!["kind"]!.GetValue<string>(), expired["object"]!["code"]!.GetValue<int>(), expired["object"]!["reason"]!.GetValue<string>()));
    }

    [Fact]
    public async Task The_status_subresource_writes_only_status_and_a_spec_change_is_a_new_generation()
    {
        _api.Register(new ApiResource("security.ztm.dev", "v1", "authorizationpolicies", "AuthorizationPolicy", true) { StatusSubresource = true });
        _api.Seed(JsonNode.Parse("""{"apiVersion":"security.ztm.dev/v1","kind":"AuthorizationPolicy","metadata":{"name":"p","namespace":"shop"},"spec":{"action":"ALLOW"},"status":{"ignored":true}}""")!.AsObject());
        Assert.Null(_api.Get("security.ztm.dev/v1", "authorizationpolicies", "shop", "p")!["status"]);

        await _client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(new V1Patch("""{"status":{"observedGeneration":1},"spec":{"action":"DENY"}}""", V1Patch.PatchType.MergePatch),
            "security.ztm.dev", "v1", "shop", "authorizationpolicies", "p");
        var stored = _api.Get("security.ztm.dev/v1", "authorizationpolicies", "shop", "p")!;
        Assert.Equal(1, stored["status"]!["observedGeneration"]!.GetValue<long>());
        Assert.Equal("ALLOW", stored["spec"]!["action"]!.GetValue<string>()); // /status writes nothing else
        Assert.Equal(1, stored["metadata"]!["generation"]!.GetValue<long>());

        await _client.CustomObjects.PatchNamespacedCustomObjectAsync(new V1Patch("""{"metadata":{"labels":{"a":"b"}},"status":{"observedGeneration":9}}""", V1Patch.PatchType.MergePatch),
            "security.ztm.dev", "v1", "shop", "authorizationpolicies", "p");
        stored = _api.Get("security.ztm.dev/v1", "authorizationpolicies", "shop", "p")!;
        Assert.Equal((1L, 1L), (stored["metadata"]!["generation"]!.GetValue<long>(), stored["status"]!["observedGeneration"]!.GetValue<long>()));

        await _client.CustomObjects.PatchNamespacedCustomObjectAsync(new V1Patch("""{"spec":{"action":"DENY"}}""", V1Patch.PatchType.MergePatch),
            "security.ztm.dev", "v1", "shop", "authorizationpolicies", "p");
        Assert.Equal(2, _api.Get("security.ztm.dev/v1", "authorizationpolicies", "shop", "p")!["metadata"]!["generation"]!.GetValue<long>());
    }

    [Fact]
    public async Task Injected_failures_answer_with_the_status_asked_for_then_stop()
    {
        _api.Fail(r => r.Method == "GET", 1, 503, "ServiceUnavailable");

        var failed = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.ListNamespaceAsync());
        AssertStatus(failed, HttpStatusCode.ServiceUnavailable, "ServiceUnavailable", "injected failure");
        Assert.Empty((await _client.CoreV1.ListNamespaceAsync()).Items);
    }

    [Fact]
    public void Json_patch_follows_rfc_6902()
    {
        var document = JsonNode.Parse("""{"a":{"b":["x","y"]},"c/d":1,"e~f":2}""");

        var result = JsonPatch.Apply(document, JsonNode.Parse("""
            [{"op":"add","path":"/a/b/1","value":"z"},
             {"op":"remove","path":"/c~1d"},
             {"op":"replace","path":"/e~0f","value":3},
             {"op":"copy","from":"/a/b/0","path":"/a/b/-"},
             {"op":"move","from":"/e~0f","path":"/g"},
             {"op":"test","path":"/g","value":3}]
            """));

        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"a":{"b":["x","z","y","x"]},"g":3}"""), result), result!.ToJsonString());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"a":{"b":["x","y"]},"c/d":1,"e~f":2}"""), document)); // the input is not changed
        Assert.False(Assert.Throws<PatchException>(() => JsonPatch.Apply(document, JsonNode.Parse("""[{"op":"remove","path":"/nope"}]"""))).Malformed);
        Assert.False(Assert.Throws<PatchException>(() => JsonPatch.Apply(document, JsonNode.Parse("""[{"op":"add","path":"/a/b/5","value":1}]"""))).Malformed);
        Assert.True(Assert.Throws<PatchException>(() => JsonPatch.Apply(document, JsonNode.Parse("""[{"op":"jump","path":"/a"}]"""))).Malformed);
        Assert.True(Assert.Throws<PatchException>(() => JsonPatch.Apply(document, JsonNode.Parse("""{"op":"add"}"""))).Malformed);
    }

    [Fact]
    public async Task A_token_review_answers_as_the_api_server_for_the_tokens_the_double_issued()
    {
        var pod = _api.Seed(new V1Pod
        {
            ApiVersion = "v1",
            Kind = "Pod",
            Metadata = new V1ObjectMeta { Name = "orders-1", NamespaceProperty = "shop" },
            Spec = new V1PodSpec { ServiceAccountName = "orders", NodeName = "node-1", Containers = [new V1Container { Name = "app", Image = "orders:1" }] },
        });
        var uid = pod["metadata"]!["uid"]!.GetValue<string>();
        var token = _api.IssuePodToken("shop", "orders-1", "ztm-controlplane");
        Assert.DoesNotContain(token, _api.Get("v1", "pods", "shop", "orders-1")!.ToJsonString(), StringComparison.Ordinal);

        var review = await _client.AuthenticationV1.CreateTokenReviewAsync(new V1TokenReview { Spec = new V1TokenReviewSpec { Token = token, Audiences = ["other", "ztm-controlplane"] } });
        Assert.True(review.Status.Authenticated);
        Assert.Null(review.Status.Error);
        Assert.Equal(["ztm-controlplane"], review.Status.Audiences);
        Assert.Equal("system:serviceaccount:shop:orders", review.Status.User.Username);
        Assert.Equal(["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"], review.Status.User.Groups);
        Assert.Equal(["orders-1"], review.Status.User.Extra["authentication.kubernetes.io/pod-name"]);
        Assert.Equal([uid], review.Status.User.Extra["authentication.kubernetes.io/pod-uid"]);
        Assert.Equal(["node-1"], review.Status.User.Extra["authentication.kubernetes.io/node-name"]);
        Assert.StartsWith("JTI=", Assert.Single(review.Status.User.Extra["authentication.kubernetes.io/credential-id"]), StringComparison.Ordinal);
        Assert.Equal(201, (int)_api.Requests[^1].Status);

        // No spec.audiences: the API server's own, which a projected token for another audience does not have; a legacy token does.
        var implicitAudience = await _client.AuthenticationV1.CreateTokenReviewAsync(new V1TokenReview { Spec = new V1TokenReviewSpec { Token = token } });
        Assert.NotEqual(true, implicitAudience.Status.Authenticated);
        Assert.Equal($"token audiences [\"ztm-controlplane\"] is invalid for the target audiences [\"{KubernetesApiDouble.ApiServerAudience}\"]", implicitAudience.Status.Error);
        var legacy = await _client.AuthenticationV1.CreateTokenReviewAsync(new V1TokenReview { Spec = new V1TokenReviewSpec { Token = _api.IssueLegacyToken("shop", "orders") } });
        Assert.True(legacy.Status.Authenticated);
        Assert.Null(legacy.Status.User.Extra);

        var unknown = await _client.AuthenticationV1.CreateTokenReviewAsync(new V1TokenReview { Spec = new V1TokenReviewSpec { Token = "nope", Audiences = ["ztm-controlplane"] } });
        Assert.Equal((null, "invalid bearer token"), (unknown.Status.Authenticated, unknown.Status.Error));

        // Only create is served, as on the API server.
        var get = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CustomObjects.ListClusterCustomObjectAsync("authentication.k8s.io", "v1", "tokenreviews"));
        AssertStatus(get, HttpStatusCode.MethodNotAllowed, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    }

    private static V1ConfigMap ConfigMap(string name, string value, string? resourceVersion = null) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, ResourceVersion = resourceVersion },
        Data = new Dictionary<string, string> { ["root-cert.pem"] = value },
    };

    private static void AssertStatus(HttpOperationException error, HttpStatusCode code, string reason, string message)
    {
        Assert.Equal(code, error.Response.StatusCode);
        var status = KubernetesJson.Deserialize<V1Status>(error.Response.Content);
        Assert.Equal("Status", status.Kind);
        Assert.Equal("Failure", status.Status);
        Assert.Equal(reason, status.Reason);
        Assert.Equal((int)code, status.Code);
        Assert.Contains(message, status.Message, StringComparison.Ordinal);
    }
}
