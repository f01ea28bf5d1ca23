using k8s;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.KubernetesDouble;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.ControlPlane.Tests.Policy;

/// <summary>The chart's four policy CRDs (<c>security.ztm.dev/v1</c>, with the status subresource), for the API double.</summary>
internal static class PolicyCustomResources
{
    public static void Register(KubernetesApiDouble api)
    {
        foreach (var kind in PolicyKinds.Builtin.All)
        {
            api.Register(new ApiResource(KubernetesPolicySource.Group, KubernetesPolicySource.Version, KubernetesPolicySource.PluralOf(kind), kind.Name, true) { StatusSubresource = true });
        }
    }
}

/// <summary>
/// Policy as custom resources, against the Kubernetes API double through KubernetesClient and the control plane's parts
/// (ConfigStore versions what the source publishes): list, watch, 410 Gone, dropped streams, bookmarks, and the
/// <c>Accepted</c> status the leader writes.
/// </summary>
public sealed class KubernetesPolicySourceTests : IAsyncLifetime
{
    /// <summary>What the source lists and watches, one list and one watch each: every policy kind, and the ConfigMaps (ApiSpec documents).</summary>
    private static readonly int KindCount = ZeroTrustMesh.Policy.Kinds.PolicyKinds.Builtin.All.Count + 1;

    private const string ApiVersion = "security.ztm.dev/v1";
    private const string AuthorizationPolicies = "authorizationpolicies";
    private const string ApiSpecs = "apispecs";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-k8s-policy-").FullName;
    private readonly CollectingLogs _logs = new();
    private readonly GatedLeadership _leadership = new();
    private KubernetesApiDouble _api = null!;

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        PolicyCustomResources.Register(_api);
    }

    public async Task DisposeAsync()
    {
        await _api.DisposeAsync();
        Directory.Delete(_dataDir, recursive: true);
    }

    [Fact]
    public async Task The_first_list_of_every_namespace_is_published_and_each_resource_is_accepted()
    {
        _leadership.Lead();
        Seed(Allow("shop", "orders-from-frontend", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        Seed(Allow("billing", "invoices-from-orders", "invoices", "spiffe://cluster.local/ns/shop/sa/orders"));
        Seed(new JsonObject
        {
            ["apiVersion"] = ApiVersion,
            ["kind"] = "PeerAuthentication",
            ["metadata"] = new JsonObject { ["name"] = "strict", ["namespace"] = "shop" },
            ["spec"] = new JsonObject { ["mode"] = "STRICT" },
        });

        await using var parts = await StartAsync();
        var store = parts.Get<ConfigStore>();

        var state = await WaitForConfigAsync(store, s => s.Resources.Count == 3);
        Assert.Equal(
            ["AuthorizationPolicy/billing/invoices-from-orders", "AuthorizationPolicy/shop/orders-from-frontend", "PeerAuthentication/shop/strict"],
            state.Resources.Values.Select(r => r.KeyText).Order(StringComparer.Ordinal));
        // What sidecars receive is the validated model's canonical JSON: nothing of the API server's metadata.
        var sent = state.Resources[new ResourceKey("AuthorizationPolicy", "shop", "orders-from-frontend")].Yaml;
        Assert.DoesNotContain("resourceVersion", sent, StringComparison.Ordinal);
        Assert.DoesNotContain("uid", sent, StringComparison.Ordinal);

        await _api.WaitForAsync(_ => Accepted(AuthorizationPolicies, "shop", "orders-from-frontend")?["status"]?.GetValue<string>() == "True"
            && Accepted(AuthorizationPolicies, "billing", "invoices-from-orders") is not null
            && Accepted("peerauthentications", "shop", "strict") is not null, Timeout);
        var condition = Accepted(AuthorizationPolicies, "shop", "orders-from-frontend")!;
        Assert.Equal("Valid", condition["reason"]!.GetValue<string>());
        Assert.Equal(1, condition["observedGeneration"]!.GetValue<long>());
        Assert.NotNull(condition["lastTransitionTime"]);
    }

    [Fact]
    public async Task A_restart_with_the_same_resources_keeps_the_config_version()
    {
        _leadership.Lead();
        Seed(Allow("shop", "orders-from-frontend", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        string version;
        await using (var first = await StartAsync())
        {
            version = (await WaitForConfigAsync(first.Get<ConfigStore>(), s => s.Resources.Count == 1)).Version;
        }

        await using var restarted = await StartAsync();

        var state = restarted.Get<ConfigStore>().Current;
        Assert.Equal((version, 1), (state.Version, state.Resources.Count));
    }

    [Fact]
    public async Task Added_modified_and_deleted_resources_each_make_a_new_config_version()
    {
        _leadership.Lead();
        await using var parts = await StartAsync();
        var store = parts.Get<ConfigStore>();
        var empty = store.Current.Version;
        var key = new ResourceKey("AuthorizationPolicy", "shop", "orders-from-frontend");

        Seed(Allow("shop", "orders-from-frontend", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        var added = await WaitForConfigAsync(store, s => s.Resources.ContainsKey(key));
        Assert.NotEqual(empty, added.Version);

        await PatchAsync(AuthorizationPolicies, "shop", "orders-from-frontend",
            """{"spec":{"rules":[{"from":[{"source":{"principals":["spiffe://cluster.local/ns/shop/sa/checkout"]}}]}]}}""");
        var modified = await WaitForConfigAsync(store, s => s.Resources.TryGetValue(key, out var r) && r.Yaml.Contains("sa/checkout", StringComparison.Ordinal));
        Assert.NotEqual(added.Version, modified.Version);
        await _api.WaitForAsync(_ => Accepted(AuthorizationPolicies, "shop", "orders-from-frontend")?["observedGeneration"]?.GetValue<long>() == 2, Timeout);

        using (var client = _api.CreateClient())
        {
            await client.CustomObjects.DeleteNamespacedCustomObjectAsync(KubernetesPolicySource.Group, KubernetesPolicySource.Version, "shop", AuthorizationPolicies, "orders-from-frontend");
        }
        var deleted = await WaitForConfigAsync(store, s => !s.Resources.ContainsKey(key));
        Assert.NotEqual(modified.Version, deleted.Version);
        Assert.Contains(_logs.Lines, l => l.StartsWith("policy deleted AuthorizationPolicy/shop/orders-from-frontend", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_invalid_resource_is_refused_with_every_error_and_path_while_the_valid_ones_are_published()
    {
        _leadership.Lead();
        Seed(Allow("shop", "good", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        var bad = Allow("shop", "bad", "orders", "frontend");
        bad["spec"]!["action"] = "MAYBE";
        Seed(bad);

        await using var parts = await StartAsync();
        var store = parts.Get<ConfigStore>();

        await _api.WaitForAsync(_ => Accepted(AuthorizationPolicies, "shop", "bad") is not null && Accepted(AuthorizationPolicies, "shop", "good") is not null, Timeout);
        Assert.Equal(["AuthorizationPolicy/shop/good"], store.Current.Resources.Values.Select(r => r.KeyText));
        var refused = Accepted(AuthorizationPolicies, "shop", "bad")!;
        Assert.Equal("False", refused["status"]!.GetValue<string>());
        Assert.Equal("Invalid", refused["reason"]!.GetValue<string>());
        var message = refused["message"]!.GetValue<string>();
        Assert.StartsWith("2 error(s); not pushed to any sidecar: ", message, StringComparison.Ordinal);
        Assert.Contains("spec.action: ", message, StringComparison.Ordinal);
        Assert.Contains("spec.rules[0].from[0].source.principals[0]: ", message, StringComparison.Ordinal);
        Assert.Equal("True", Accepted(AuthorizationPolicies, "shop", "good")!["status"]!.GetValue<string>());

        // Fixed: published, and accepted at its new generation.
        await PatchAsync(AuthorizationPolicies, "shop", "bad",
            """{"spec":{"action":"ALLOW","rules":[{"from":[{"source":{"principals":["spiffe://cluster.local/ns/shop/sa/frontend"]}}]}]}}""");
        await WaitForConfigAsync(store, s => s.Resources.Count == 2);
        await _api.WaitForAsync(_ => Accepted(AuthorizationPolicies, "shop", "bad") is { } c && c["status"]!.GetValue<string>() == "True" && c["observedGeneration"]!.GetValue<long>() == 2, Timeout);
    }

    [Fact]
    public async Task A_second_ApiSpec_for_a_service_is_left_out_with_its_reason_while_the_one_in_force_and_the_rest_stay()
    {
        _leadership.Lead();
        Seed(Allow("shop", "good", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        Seed(Spec("orders-api", "orders"));

        await using var parts = await StartAsync();
        var store = parts.Get<ConfigStore>();
        await WaitForConfigAsync(store, s => s.Resources.Count == 2);

        // A second spec for the same service, and an unrelated change: the change is published, the first spec stays.
        await CreateAsync(ApiSpecs, Spec("orders-api-v2", "orders"));
        await CreateAsync(AuthorizationPolicies, Allow("shop", "newer", "payments", "spiffe://cluster.local/ns/shop/sa/orders"));
        var state = await WaitForConfigAsync(store, s => s.Resources.Count == 3);
        Assert.Equal(["ApiSpec/shop/orders-api", "AuthorizationPolicy/shop/good", "AuthorizationPolicy/shop/newer"],
            state.Resources.Values.Select(r => r.KeyText).Order(StringComparer.Ordinal));
        await _api.WaitForAsync(_ => Accepted(ApiSpecs, "shop", "orders-api-v2") is { } c && c["status"]!.GetValue<string>() == "False", Timeout);
        var refused = Accepted(ApiSpecs, "shop", "orders-api-v2")!;
        Assert.Equal("SetConflict", refused["reason"]!.GetValue<string>());
        Assert.Contains("two ApiSpecs (orders-api, orders-api-v2) select service 'orders'", refused["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("True", Accepted(ApiSpecs, "shop", "orders-api")!["status"]!.GetValue<string>());
        Assert.Contains(_logs.Lines, l => l.Contains("ApiSpec/shop/orders-api-v2 left out, the others are published", StringComparison.Ordinal));

        // The conflict gone: the second spec is published and accepted.
        await DeleteAsync(ApiSpecs, "shop", "orders-api");
        await WaitForConfigAsync(store, s => s.Resources.Keys.Any(k => k.Name == "orders-api-v2") && !s.Resources.Keys.Any(k => k.Name == "orders-api"));
        await _api.WaitForAsync(_ => Accepted(ApiSpecs, "shop", "orders-api-v2") is { } c && c["status"]!.GetValue<string>() == "True", Timeout);
    }

    [Fact]
    public async Task Over_the_rule_limit_of_the_set_the_last_good_set_stays_and_the_resource_not_in_force_says_so()
    {
        _leadership.Lead();
        Seed(Allow("shop", "good", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));

        await using var parts = await StartAsync();
        var store = parts.Get<ConfigStore>();
        var before = await WaitForConfigAsync(store, s => s.Resources.Count == 1);

        var huge = Allow("shop", "huge", "payments", "spiffe://cluster.local/ns/shop/sa/orders");
        var rules = new JsonArray();
        for (var i = 0; i < ZeroTrustMesh.Policy.Validation.PolicyValidator.MaxRules; i++)
        {
            rules.Add(new JsonObject { ["from"] = new JsonArray(new JsonObject { ["source"] = new JsonObject { ["principals"] = new JsonArray($"spiffe://cluster.local/ns/shop/sa/caller-{i}") } }) });
        }
        huge["spec"]!["rules"] = rules; // with "good"'s rule, one over the limit
        await CreateAsync(AuthorizationPolicies, huge);

        await _api.WaitForAsync(_ => Accepted(AuthorizationPolicies, "shop", "huge") is { } c && c["status"]!.GetValue<string>() == "False", Timeout);
        var refused = Accepted(AuthorizationPolicies, "shop", "huge")!;
        Assert.Equal("SetConflict", refused["reason"]!.GetValue<string>());
        Assert.Contains("the last good set stays in force", refused["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains($"at most {ZeroTrustMesh.Policy.Validation.PolicyValidator.MaxRules} are allowed", refused["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("True", Accepted(AuthorizationPolicies, "shop", "good")!["status"]!.GetValue<string>());
        Assert.Equal(before.Version, store.Current.Version);

        // Back under the limit: published, and accepted.
        await PatchAsync(AuthorizationPolicies, "shop", "huge", """{"spec":{"rules":[{"from":[{"source":{"principals":["spiffe://cluster.local/ns/shop/sa/orders"]}}]}]}}""");
        await WaitForConfigAsync(store, s => s.Resources.Count == 2);
        await _api.WaitForAsync(_ => Accepted(AuthorizationPolicies, "shop", "huge") is { } c && c["status"]!.GetValue<string>() == "True", Timeout);
    }

    [Fact]
    public async Task After_410_Gone_the_kind_is_listed_again_without_losing_or_duplicating_a_change()
    {
        _leadership.Lead();
        Seed(Allow("shop", "kept", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        Seed(Allow("shop", "deleted-meanwhile", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        await using var parts = await StartAsync();
        var store = parts.Get<ConfigStore>();
        await WaitForConfigAsync(store, s => s.Resources.Count == 2);
        await _api.WaitForAsync(api => api.OpenWatches == KindCount, Timeout);

        // The watch cannot come back while the cluster changes, and then the history it would resume from is gone.
        _api.Fail(r => r.Query["watch"] == "true", 10_000, 503, "ServiceUnavailable");
        _api.DropWatches();
        await _api.WaitForAsync(api => api.Requests.Any(r => r.Status == 503 && r.Path.EndsWith(AuthorizationPolicies, StringComparison.Ordinal)), Timeout);
        Seed(Allow("shop", "added-meanwhile", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        using (var client = _api.CreateClient())
        {
            await client.CustomObjects.DeleteNamespacedCustomObjectAsync(KubernetesPolicySource.Group, KubernetesPolicySource.Version, "shop", AuthorizationPolicies, "deleted-meanwhile");
        }
        _api.ExpireHistory();
        _api.Heal();

        var state = await WaitForConfigAsync(store, s => s.Resources.ContainsKey(new ResourceKey("AuthorizationPolicy", "shop", "added-meanwhile")));
        Assert.Equal(["AuthorizationPolicy/shop/added-meanwhile", "AuthorizationPolicy/shop/kept"], state.Resources.Values.Select(r => r.KeyText).Order(StringComparer.Ordinal));
        await _logs.WaitForAsync(l => l.StartsWith("policy watch of AuthorizationPolicy expired at resourceVersion", StringComparison.Ordinal), 1, Timeout);
        Assert.Equal(2, _api.Requests.Count(r => r.Method == "GET" && r.Status == 200 && r.Path.EndsWith(AuthorizationPolicies, StringComparison.Ordinal)));
        await _api.WaitForAsync(api => api.OpenWatches == KindCount, Timeout);
    }

    [Fact]
    public async Task A_dropped_watch_stream_is_resumed_from_its_resourceVersion_without_a_new_list()
    {
        _leadership.Lead();
        await using var parts = await StartAsync();
        var store = parts.Get<ConfigStore>();
        await _api.WaitForAsync(api => api.OpenWatches == KindCount, Timeout);

        _api.DropWatches();
        await _api.WaitForAsync(api => api.OpenWatches == KindCount, Timeout);
        Seed(Allow("shop", "after-the-drop", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));

        await WaitForConfigAsync(store, s => s.Resources.Count == 1);
        Assert.Equal(KindCount, _api.Requests.Count(r => r.Method == "GET" && r.Status == 200)); // one list per kind (and the ConfigMaps), at start only
        Assert.Equal(2 * KindCount, _api.Requests.Count(r => r.Method == "WATCH" && r.Status == 200));
    }

    [Fact]
    public async Task A_bookmark_moves_the_resourceVersion_a_watch_resumes_from()
    {
        _leadership.Lead();
        await using var parts = await StartAsync();
        await _api.WaitForAsync(api => api.OpenWatches == KindCount, Timeout);
        // Changes of another kind move the cluster's resourceVersion on; the AuthorizationPolicy watch sees none of them.
        for (var i = 0; i < 3; i++)
        {
            Seed(new JsonObject
            {
                ["apiVersion"] = ApiVersion,
                ["kind"] = "PeerAuthentication",
                ["metadata"] = new JsonObject { ["name"] = $"p{i}", ["namespace"] = "shop" },
                ["spec"] = new JsonObject { ["mode"] = "STRICT" },
            });
        }
        var current = _api.ResourceVersion;

        _api.SendBookmarks();
        _api.DropWatches();

        await _api.WaitForAsync(api => api.Requests.Any(r => r.Method == "WATCH" && r.Path.EndsWith(AuthorizationPolicies, StringComparison.Ordinal)
            && r.Query.Contains($"resourceVersion={current}", StringComparison.Ordinal)), Timeout);
        Assert.Contains("allowWatchBookmarks=true", _api.Requests.First(r => r.Method == "WATCH").Query, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_is_written_only_by_the_leader_and_only_when_it_changes()
    {
        Seed(Allow("shop", "good", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        var bad = Allow("shop", "bad", "orders", "frontend");
        Seed(bad);
        await using var parts = await StartAsync();
        var store = parts.Get<ConfigStore>();
        await WaitForConfigAsync(store, s => s.Resources.Count == 1);

        // Not leading: policy is served, but no status is written.
        Seed(Allow("shop", "later", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        await WaitForConfigAsync(store, s => s.Resources.Count == 2);
        Assert.DoesNotContain(_api.Requests, IsStatusWrite);

        _leadership.Lead();
        await _api.WaitForAsync(api => api.Requests.Count(IsStatusWrite) == 3, Timeout);

        // A label (no new generation, the same verdict) changes what sidecars get, but not the status.
        await PatchAsync(AuthorizationPolicies, "shop", "good", """{"metadata":{"labels":{"team":"shop"}}}""");
        await WaitForConfigAsync(store, s => s.Resources.Values.Any(r => r.Yaml.Contains("\"team\"", StringComparison.Ordinal)));
        // A new generation of one resource is one more write; the writes' own MODIFIED events cause none.
        await PatchAsync(AuthorizationPolicies, "shop", "later", """{"spec":{"action":"DENY"}}""");
        await _api.WaitForAsync(_ => Accepted(AuthorizationPolicies, "shop", "later")?["observedGeneration"]?.GetValue<long>() == 2, Timeout);
        await PatchAsync(AuthorizationPolicies, "shop", "bad", """{"metadata":{"labels":{"team":"shop"}}}""");
        await _logs.WaitForAsync(l => l.StartsWith("policy modified AuthorizationPolicy/shop/bad", StringComparison.Ordinal), 1, Timeout);

        Assert.Equal(4, _api.Requests.Count(IsStatusWrite));
        Assert.All(_api.Requests.Where(IsStatusWrite), r => Assert.Equal("application/merge-patch+json", r.ContentType?.Split(';')[0]));
    }

    [Fact]
    public async Task An_ApiSpec_document_in_a_ConfigMap_is_compiled_followed_when_it_changes_and_refused_with_the_reason_when_missing()
    {
        _leadership.Lead();
        var key = new ResourceKey("ApiSpec", "shop", "bookshop-api");
        Seed(Allow("shop", "orders-from-frontend", "orders", "spiffe://cluster.local/ns/shop/sa/frontend"));
        Seed(ApiSpecFromConfigMap("bookshop-openapi", "openapi.yaml"));

        await using var parts = await StartAsync();
        var store = parts.Get<ConfigStore>();

        // No ConfigMap yet: the ApiSpec is left out, saying which, while the rest is published.
        await _api.WaitForAsync(_ => Accepted(ApiSpecs, "shop", "bookshop-api") is not null, Timeout);
        var missing = Accepted(ApiSpecs, "shop", "bookshop-api")!;
        Assert.Equal(("False", "Invalid"), (missing["status"]!.GetValue<string>(), missing["reason"]!.GetValue<string>()));
        Assert.Contains("spec.openapi.configMapRef: ConfigMap shop/bookshop-openapi does not exist", missing["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(["AuthorizationPolicy/shop/orders-from-frontend"], store.Current.Resources.Values.Select(r => r.KeyText));

        // It appears with another key: refused, naming the keys it has.
        using var client = _api.CreateClient();
        await client.CoreV1.CreateNamespacedConfigMapAsync(new k8s.Models.V1ConfigMap
        {
            Metadata = new k8s.Models.V1ObjectMeta { Name = "bookshop-openapi", NamespaceProperty = "shop" },
            Data = new Dictionary<string, string> { ["bookshop.yaml"] = ApiSpecCompilerTests.Bookshop },
        }, "shop");
        await _api.WaitForAsync(_ => Accepted(ApiSpecs, "shop", "bookshop-api")?["message"]?.GetValue<string>().Contains("has no key", StringComparison.Ordinal) == true, Timeout);
        Assert.Contains("ConfigMap shop/bookshop-openapi has no key 'openapi.yaml' in its data (keys: bookshop.yaml)", Accepted(ApiSpecs, "shop", "bookshop-api")!["message"]!.GetValue<string>(), StringComparison.Ordinal);

        // The key is there: compiled (sidecars get operations, never the document) and accepted.
        await client.CoreV1.PatchNamespacedConfigMapAsync(new k8s.Models.V1Patch(
            new JsonObject { ["data"] = new JsonObject { ["openapi.yaml"] = ApiSpecCompilerTests.Bookshop } }.ToJsonString(), k8s.Models.V1Patch.PatchType.MergePatch), "bookshop-openapi", "shop");
        var compiled = await WaitForConfigAsync(store, s => s.Resources.ContainsKey(key));
        var spec = (ApiSpec)compiled.Resources[key].Document.Resource;
        Assert.True(spec.IsCompiled);
        Assert.Equal(8, spec.Spec.Operations.Length);
        await _api.WaitForAsync(_ => Accepted(ApiSpecs, "shop", "bookshop-api")?["status"]?.GetValue<string>() == "True", Timeout);

        // The document is edited in the ConfigMap: compiled again and pushed as a new version, the ApiSpec untouched.
        var edited = ApiSpecCompilerTests.Bookshop.Replace("operationId: getBook", "operationId: readBook", StringComparison.Ordinal);
        Assert.NotEqual(ApiSpecCompilerTests.Bookshop, edited);
        await client.CoreV1.PatchNamespacedConfigMapAsync(new k8s.Models.V1Patch(
            new JsonObject { ["data"] = new JsonObject { ["openapi.yaml"] = edited } }.ToJsonString(), k8s.Models.V1Patch.PatchType.MergePatch), "bookshop-openapi", "shop");
        var recompiled = await WaitForConfigAsync(store, s => s.Resources.TryGetValue(key, out var r) && ((ApiSpec)r.Document.Resource).Spec.Operations.Any(o => o.Id == "readBook"));
        Assert.NotEqual(compiled.Version, recompiled.Version);

        // A document that does not compile: the last good ApiSpec is not kept (as for any invalid resource), the reason is shown.
        await client.CoreV1.PatchNamespacedConfigMapAsync(new k8s.Models.V1Patch(
            new JsonObject { ["data"] = new JsonObject { ["openapi.yaml"] = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {/a: {get: {responses: {'200': {description: ok, content: {application/json: {schema: {$ref: '#/components/schemas/Nope'}}}}}}}}\n" } }.ToJsonString(),
            k8s.Models.V1Patch.PatchType.MergePatch), "bookshop-openapi", "shop");
        await WaitForConfigAsync(store, s => !s.Resources.ContainsKey(key));
        await _api.WaitForAsync(_ => Accepted(ApiSpecs, "shop", "bookshop-api")?["status"]?.GetValue<string>() == "False", Timeout);
        Assert.Contains("spec.openapi", Accepted(ApiSpecs, "shop", "bookshop-api")!["message"]!.GetValue<string>(), StringComparison.Ordinal);

        // Fixed, then the ConfigMap deleted: in force again, then out again with the reason.
        await client.CoreV1.PatchNamespacedConfigMapAsync(new k8s.Models.V1Patch(
            new JsonObject { ["data"] = new JsonObject { ["openapi.yaml"] = ApiSpecCompilerTests.Bookshop } }.ToJsonString(), k8s.Models.V1Patch.PatchType.MergePatch), "bookshop-openapi", "shop");
        await WaitForConfigAsync(store, s => s.Resources.ContainsKey(key));
        await client.CoreV1.DeleteNamespacedConfigMapAsync("bookshop-openapi", "shop");
        await WaitForConfigAsync(store, s => !s.Resources.ContainsKey(key));
        await _api.WaitForAsync(_ => Accepted(ApiSpecs, "shop", "bookshop-api")?["message"]?.GetValue<string>().Contains("does not exist", StringComparison.Ordinal) == true, Timeout);
        Assert.True(store.Current.Resources.ContainsKey(new ResourceKey("AuthorizationPolicy", "shop", "orders-from-frontend")));
    }

    [Fact]
    public async Task A_ConfigMap_in_another_namespace_is_not_read()
    {
        _leadership.Lead();
        Seed(ApiSpecFromConfigMap("bookshop-openapi", "openapi.yaml"));
        _api.Seed(new k8s.Models.V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            Metadata = new k8s.Models.V1ObjectMeta { Name = "bookshop-openapi", NamespaceProperty = "billing" },
            Data = new Dictionary<string, string> { ["openapi.yaml"] = ApiSpecCompilerTests.Bookshop },
        });

        await using var parts = await StartAsync();

        await _api.WaitForAsync(_ => Accepted(ApiSpecs, "shop", "bookshop-api") is not null, Timeout);
        Assert.Contains("ConfigMap shop/bookshop-openapi does not exist", Accepted(ApiSpecs, "shop", "bookshop-api")!["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Empty(parts.Get<ConfigStore>().Current.Resources);
    }

    private static JsonObject ApiSpecFromConfigMap(string name, string key) => new()
    {
        ["apiVersion"] = ApiVersion,
        ["kind"] = "ApiSpec",
        ["metadata"] = new JsonObject { ["name"] = "bookshop-api", ["namespace"] = "shop" },
        ["spec"] = new JsonObject
        {
            ["selector"] = new JsonObject { ["service"] = "bookshop" },
            ["mode"] = "Enforce",
            ["openapi"] = new JsonObject { ["configMapRef"] = new JsonObject { ["name"] = name, ["key"] = key } },
        },
    };

    private static bool IsStatusWrite(RecordedRequest request) =>
        request.Method is "PATCH" or "PUT" && request.Path.EndsWith("/status", StringComparison.Ordinal);

    private async Task<ControlPlaneParts> StartAsync() =>
        await ControlPlaneParts.StartAsync(_dataDir, TimeProvider.System, services =>
        {
            services.AddSingleton<IReplicaLeadership>(_leadership);
            services.AddKubernetesPolicy(_ => _api.CreateClient());
        }, _logs);

    private void Seed(JsonObject resource) => _api.Seed(resource);

    private async Task CreateAsync(string plural, JsonObject resource)
    {
        using var client = _api.CreateClient();
        var ns = resource["metadata"]!["namespace"]!.GetValue<string>();
        await client.CustomObjects.CreateNamespacedCustomObjectAsync(resource, KubernetesPolicySource.Group, KubernetesPolicySource.Version, ns, plural);
    }

    private async Task DeleteAsync(string plural, string ns, string name)
    {
        using var client = _api.CreateClient();
        await client.CustomObjects.DeleteNamespacedCustomObjectAsync(KubernetesPolicySource.Group, KubernetesPolicySource.Version, ns, plural, name);
    }

    /// <summary>An ApiSpec for <paramref name="service"/> in shop with a one-operation inline OpenAPI 3.1 document.</summary>
    private static JsonObject Spec(string name, string service) => new()
    {
        ["apiVersion"] = ApiVersion,
        ["kind"] = "ApiSpec",
        ["metadata"] = new JsonObject { ["name"] = name, ["namespace"] = "shop" },
        ["spec"] = new JsonObject
        {
            ["selector"] = new JsonObject { ["service"] = service },
            ["openapi"] = new JsonObject
            {
                ["inline"] = """
                    openapi: 3.1.0
                    info: {title: orders, version: "1"}
                    paths:
                      /orders/{id}:
                        get:
                          parameters:
                            - {name: id, in: path, required: true, schema: {type: integer}}
                          responses:
                            "200": {description: ok}
                    """,
            },
        },
    };

    private async Task PatchAsync(string plural, string ns, string name, string mergePatch)
    {
        using var client = _api.CreateClient();
        await client.CustomObjects.PatchNamespacedCustomObjectAsync(
            new k8s.Models.V1Patch(mergePatch, k8s.Models.V1Patch.PatchType.MergePatch), KubernetesPolicySource.Group, KubernetesPolicySource.Version, ns, plural, name);
    }

    private JsonObject? Accepted(string plural, string ns, string name) =>
        (_api.Get(ApiVersion, plural, ns, name)?["status"]?["conditions"] as JsonArray)?
            .OfType<JsonObject>().FirstOrDefault(c => c["type"]?.GetValue<string>() == "Accepted");

    private static JsonObject Allow(string ns, string name, string service, string principal) => new()
    {
        ["apiVersion"] = ApiVersion,
        ["kind"] = "AuthorizationPolicy",
        ["metadata"] = new JsonObject
        {
            ["name"] = name,
            ["namespace"] = ns,
            ["annotations"] = new JsonObject { ["kubectl.kubernetes.io/last-applied-configuration"] = "{\"a\":\"copy\"}" },
        },
        ["spec"] = new JsonObject
        {
            ["selector"] = new JsonObject { ["service"] = service },
            ["action"] = "ALLOW",
            ["rules"] = new JsonArray(new JsonObject
            {
                ["from"] = new JsonArray(new JsonObject { ["source"] = new JsonObject { ["principals"] = new JsonArray(principal) } }),
            }),
        },
    };

    private static async Task<ConfigState> WaitForConfigAsync(ConfigStore store, Func<ConfigState, bool> condition)
    {
        var reached = new TaskCompletionSource<ConfigState>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnChanged(ConfigState state)
        {
            if (condition(state))
            {
                reached.TrySetResult(state);
            }
        }
        store.Changed += OnChanged;
        try
        {
            var current = store.Current;
            return condition(current) ? current : await reached.Task.WaitAsync(Timeout);
        }
        finally
        {
            store.Changed -= OnChanged;
        }
    }

    /// <summary>Leadership a test hands out: nothing leader-only runs until <see cref="Lead"/>.</summary>
    private sealed class GatedLeadership : IReplicaLeadership
    {
        private readonly TaskCompletionSource _leading = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Lead() => _leading.TrySetResult();

        public async Task RunWhileLeadingAsync(Func<CancellationToken, Task> work, CancellationToken stopping)
        {
            try
            {
                await _leading.Task.WaitAsync(stopping);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            await work(stopping);
        }
    }
}
