using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.ControlPlane.Registry;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Registry;

/// <summary>
/// The registry from the cluster's Services, EndpointSlices and Pods, against the Kubernetes API double through
/// KubernetesClient: identities from the pods' service accounts, Service ports mapped to target ports and classified
/// HTTP or TCP, scale-down and pod deletion through watch events, and pods without a sidecar reported as such.
/// </summary>
public sealed class KubernetesServiceRegistryTests : IAsyncLifetime
{
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private const string OrdersCanary = "spiffe://cluster.local/ns/shop/sa/orders-canary";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-k8s-registry-").FullName;
    private readonly CollectingLogs _logs = new();
    private readonly ILoggerFactory _loggers;
    private KubernetesApiDouble _api = null!;
    private IKubernetes _client = null!;

    public KubernetesServiceRegistryTests() => _loggers = LoggerFactory.Create(b => b.AddProvider(_logs));

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        _client = _api.CreateClient();
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _api.DisposeAsync();
        _loggers.Dispose();
        Directory.Delete(_dataDir, recursive: true);
    }

    [Fact]
    public async Task A_service_with_two_pods_of_two_service_accounts_may_present_both_identities()
    {
        _api.Seed(Service("orders", "10.96.0.10", new V1ServicePort { Name = "http", Port = 80, TargetPort = "web" }));
        _api.Seed(Pod("orders-1", "orders", meshed: true));
        _api.Seed(Pod("orders-2", "orders-canary", meshed: true));
        _api.Seed(Slice("orders-abcde", "orders", [("http", 8080)], ("10.1.0.5", "orders-1"), ("10.1.0.6", "orders-2")));

        await using var registry = await StartAsync();

        var endpoints = registry.Value.ResolveName("orders.shop");
        Assert.Equal([Orders, OrdersCanary], endpoints.Select(e => e.Identity!.Value.Value).Order(StringComparer.Ordinal));
        Assert.Equal(["10.1.0.5:15006", "10.1.0.6:15006"], endpoints.Select(e => e.InboundAddress).Order(StringComparer.Ordinal));
        Assert.All(endpoints, e =>
        {
            Assert.Equal("orders.shop", e.Service);
            Assert.Equal([8080], e.HttpPorts); // the named targetPort as the slice resolved it
            Assert.Empty(e.TcpPorts);
            Assert.Equal(new Dictionary<int, int> { [80] = 8080 }, e.ServicePorts);
            Assert.Equal("10.96.0.10", e.ServiceAddress);
        });

        // The names a client may use, and the addresses it may dial.
        Assert.Equal(2, registry.Value.ResolveName("orders.shop.svc.cluster.local").Count);
        Assert.Equal(2, registry.Value.ResolveName("orders.shop.svc").Count);
        Assert.Equal(2, registry.Value.ResolveName("orders").Count); // unique across namespaces
        Assert.Equal(2, registry.Value.ResolveAddress("10.96.0.10:80").Count);
        Assert.Equal(2, registry.Value.ResolveAddress("10.96.0.10").Count);
        Assert.Empty(registry.Value.ResolveAddress("10.96.0.10:8080")); // not a port of the Service
        Assert.Empty(registry.Value.ResolveName("orders.billing"));
        var pod = Assert.Single(registry.Value.ResolveAddress("10.1.0.6:8080"));
        Assert.Equal(OrdersCanary, pod.Identity!.Value.Value);
        Assert.Empty(pod.ServicePorts); // dialled directly: the pod's own port

        // The same short name in a second namespace is ambiguous.
        _api.Seed(Service("orders", "10.96.0.11", new V1ServicePort { Name = "http", Port = 80, TargetPort = 8080 }, "billing"));
        _api.Seed(Slice("orders-xyz", "orders", [("http", 8080)], [], "billing"));
        await registry.WaitUntilAsync(r => r.ResolveName("orders").Count == 0);
        Assert.Equal(2, registry.Value.ResolveName("orders.shop").Count);

        // A sidecar's Register is a heartbeat only.
        Assert.Null(registry.Value.Register(Identity.SpiffeId.Parse(Orders), "10.9.9.9:15006", [8080], [], null));
        Assert.Equal(2, registry.Value.ResolveName("orders.shop").Count);
    }

    [Fact]
    public async Task Scale_down_and_pod_deletion_reach_the_answers_through_watch_events()
    {
        _api.Seed(Service("orders", "10.96.0.10", new V1ServicePort { Name = "http", Port = 80, TargetPort = 8080 }));
        _api.Seed(Pod("orders-1", "orders", meshed: true));
        _api.Seed(Pod("orders-2", "orders-canary", meshed: true));
        _api.Seed(Slice("orders-abcde", "orders", [("http", 8080)], ("10.1.0.5", "orders-1"), ("10.1.0.6", "orders-2")));
        await using var registry = await StartAsync();
        Assert.Equal(2, registry.Value.ResolveAddress("10.96.0.10:80").Count);

        // The EndpointSlice controller drops the canary (scale-down): its identity is no longer one the Service may present.
        var slice = await _client.DiscoveryV1.ReadNamespacedEndpointSliceAsync("orders-abcde", "shop");
        slice.Endpoints = [.. slice.Endpoints.Where(e => e.TargetRef.Name == "orders-1")];
        await _client.DiscoveryV1.ReplaceNamespacedEndpointSliceAsync(slice, "orders-abcde", "shop");
        await registry.WaitUntilAsync(r => r.ResolveAddress("10.96.0.10:80").Count == 1);
        Assert.Equal([Orders], registry.Value.ResolveAddress("10.96.0.10:80").Select(e => e.Identity!.Value.Value));

        // A terminating endpoint (ready: false) is not sent to.
        slice = await _client.DiscoveryV1.ReadNamespacedEndpointSliceAsync("orders-abcde", "shop");
        slice.Endpoints[0].Conditions = new V1EndpointConditions { Ready = false, Terminating = true };
        await _client.DiscoveryV1.ReplaceNamespacedEndpointSliceAsync(slice, "orders-abcde", "shop");
        await registry.WaitUntilAsync(r => r.ResolveName("orders.shop").Count == 0);

        // The pod is deleted before the slice catches up: a pod that is gone serves nothing.
        slice = await _client.DiscoveryV1.ReadNamespacedEndpointSliceAsync("orders-abcde", "shop");
        slice.Endpoints[0].Conditions = new V1EndpointConditions { Ready = true };
        await _client.DiscoveryV1.ReplaceNamespacedEndpointSliceAsync(slice, "orders-abcde", "shop");
        await registry.WaitUntilAsync(r => r.ResolveName("orders.shop").Count == 1);
        await _client.CoreV1.DeleteNamespacedPodAsync("orders-1", "shop");
        await registry.WaitUntilAsync(r => r.ResolveName("orders.shop").Count == 0);

        // The Service is deleted: nothing resolves by its name or address.
        _api.Seed(Pod("orders-1", "orders", meshed: true));
        await registry.WaitUntilAsync(r => r.ResolveName("orders.shop").Count == 1);
        await _client.CoreV1.DeleteNamespacedServiceAsync("orders", "shop");
        await registry.WaitUntilAsync(r => r.ResolveAddress("10.96.0.10:80").Count == 0 && r.ResolveName("orders.shop").Count == 0);
    }

    [Fact]
    public async Task A_pod_without_a_sidecar_is_reported_without_an_identity()
    {
        _api.Seed(Service("legacy", "10.96.0.20", new V1ServicePort { Name = "http", Port = 80, TargetPort = 8080 }));
        _api.Seed(Pod("legacy-1", "legacy", meshed: false));
        _api.Seed(Pod("legacy-2", "legacy", meshed: true));
        _api.Seed(Slice("legacy-abcde", "legacy", [("http", 8080)], ("10.1.0.7", "legacy-1"), ("10.1.0.8", "legacy-2")));
        await using var registry = await StartAsync();

        var endpoints = registry.Value.ResolveName("legacy.shop").OrderBy(e => e.InboundAddress, StringComparer.Ordinal).ToList();
        Assert.Equal(2, endpoints.Count);
        Assert.Null(endpoints[0].Identity);
        Assert.Equal("10.1.0.7", endpoints[0].InboundAddress); // the pod's IP: there is no sidecar port
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/legacy", endpoints[1].Identity!.Value.Value);
    }

    [Theory]
    [InlineData("http", null, true)]
    [InlineData("http-web", null, true)]
    [InlineData("http2", null, true)]
    [InlineData("grpc", null, true)]
    [InlineData("grpc-api", null, true)]
    [InlineData("grpc-web", null, true)]
    [InlineData("h2c-internal", null, true)]
    [InlineData("tcp-db", null, false)]
    [InlineData("httpx", null, false)] // a prefix is a whole word before '-'
    [InlineData("web", null, false)]
    [InlineData(null, null, false)] // no name, no appProtocol: opaque TCP (no sniffing)
    [InlineData("tcp", "http", true)] // appProtocol wins over the name
    [InlineData("http", "tcp", false)]
    [InlineData("api", "grpc", true)]
    [InlineData("api", "HTTP2", true)]
    [InlineData("api", "kubernetes.io/h2c", true)]
    [InlineData("api", "h2c", true)]
    [InlineData("api", "https", false)] // the app speaks TLS itself: relayed as bytes
    [InlineData("api", "kubernetes.io/ws", false)]
    [InlineData("db", "postgresql", false)]
    public void A_port_is_http_by_its_app_protocol_else_by_its_name(string? name, string? appProtocol, bool http) =>
        Assert.Equal(http, KubernetesServiceRegistry.IsHttp(new V1ServicePort { Name = name, AppProtocol = appProtocol, Port = 80 }));

    [Fact]
    public async Task Service_ports_become_http_and_tcp_target_ports_and_udp_is_not_meshed()
    {
        _api.Seed(Service("shop", "10.96.0.30",
            new V1ServicePort { Name = "http-web", Port = 80, TargetPort = 8080 },
            new V1ServicePort { Name = "api", Port = 9090, TargetPort = 9091, AppProtocol = "grpc" },
            new V1ServicePort { Name = "db", Port = 5432, TargetPort = 5432, AppProtocol = "postgresql" },
            new V1ServicePort { Name = "dns", Port = 53, TargetPort = 53, Protocol = "UDP" }));
        _api.Seed(Pod("shop-1", "shop", meshed: true));
        _api.Seed(Slice("shop-abcde", "shop", [("http-web", 8080), ("api", 9091), ("db", 5432), ("dns", 53)], ("10.1.0.9", "shop-1")));
        await using var registry = await StartAsync();

        var endpoint = Assert.Single(registry.Value.ResolveAddress("10.96.0.30:9090"));
        Assert.Equal([8080, 9091], endpoint.HttpPorts);
        Assert.Equal([5432], endpoint.TcpPorts);
        Assert.Equal(new Dictionary<int, int> { [80] = 8080, [9090] = 9091, [5432] = 5432 }, endpoint.ServicePorts);
        Assert.Empty(registry.Value.ResolveAddress("10.96.0.30:53"));
    }

    [Fact]
    public async Task Expired_watch_history_and_dropped_streams_lose_no_change()
    {
        _api.Seed(Service("orders", "10.96.0.10", new V1ServicePort { Name = "http", Port = 80, TargetPort = 8080 }));
        _api.Seed(Pod("orders-1", "orders", meshed: true));
        await using var registry = await StartAsync();
        Assert.Empty(registry.Value.ResolveName("orders.shop"));

        // The watches cannot come back while the cluster changes, and then the history they would resume from is gone:
        // each resource is listed again (410 Gone), and the list holds what changed meanwhile.
        _api.Fail(r => r.Query["watch"] == "true", 10_000, 503, "ServiceUnavailable");
        _api.DropWatches();
        await _api.WaitForAsync(api => api.Requests.Any(r => r.Status == 503 && r.Path.EndsWith("/endpointslices", StringComparison.Ordinal)), Timeout);
        _api.Seed(Slice("orders-abcde", "orders", [("http", 8080)], ("10.1.0.5", "orders-1")));
        _api.ExpireHistory();
        _api.Heal();

        await registry.WaitUntilAsync(r => r.ResolveName("orders.shop").Count == 1);
        Assert.Equal([Orders], registry.Value.ResolveName("orders.shop").Select(e => e.Identity!.Value.Value));
        await _logs.WaitForAsync(l => l.StartsWith("registry watch of endpointslices expired at resourceVersion", StringComparison.Ordinal), 1, Timeout);
        Assert.Equal(2, _api.Requests.Count(r => r.Method == "GET" && r.Status == 200 && r.Path.EndsWith("/endpointslices", StringComparison.Ordinal)));
    }

    private async Task<StartedRegistry> StartAsync()
    {
        var registry = new KubernetesServiceRegistry(_client, ControlPlaneParts.Options(_dataDir), TimeProvider.System, _loggers.CreateLogger<KubernetesServiceRegistry>());
        await registry.StartAsync(CancellationToken.None);
        Assert.True(registry.Synced, "the first lists did not arrive");
        return new StartedRegistry(registry);
    }

    private static V1Service Service(string name, string clusterIp, params V1ServicePort[] ports) => Service(name, clusterIp, ports, "shop");

    private static V1Service Service(string name, string clusterIp, V1ServicePort port, string ns) => Service(name, clusterIp, [port], ns);

    private static V1Service Service(string name, string clusterIp, V1ServicePort[] ports, string ns) => new()
    {
        ApiVersion = "v1",
        Kind = "Service",
        Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = ns },
        Spec = new V1ServiceSpec { ClusterIP = clusterIp, ClusterIPs = [clusterIp], Ports = ports, Selector = new Dictionary<string, string> { ["app"] = name } },
    };

    private static V1Pod Pod(string name, string serviceAccount, bool meshed) => new()
    {
        ApiVersion = "v1",
        Kind = "Pod",
        Metadata = new V1ObjectMeta
        {
            Name = name,
            NamespaceProperty = "shop",
            Annotations = meshed ? new Dictionary<string, string> { ["ztm.dev/status"] = """{"initContainers":["ztm-init","ztm-sidecar"]}""" } : null,
        },
        Spec = new V1PodSpec { ServiceAccountName = serviceAccount, Containers = [new V1Container { Name = "app", Image = "app:1" }] },
        Status = new V1PodStatus { Phase = "Running" },
    };

    private static V1EndpointSlice Slice(string name, string service, (string Name, int Port)[] ports, params (string Address, string Pod)[] endpoints) =>
        Slice(name, service, ports, endpoints, "shop");

    private static V1EndpointSlice Slice(string name, string service, (string Name, int Port)[] ports, (string Address, string Pod)[] endpoints, string ns) => new()
    {
        ApiVersion = "discovery.k8s.io/v1",
        Kind = "EndpointSlice",
        Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = ns, Labels = new Dictionary<string, string> { ["kubernetes.io/service-name"] = service } },
        AddressType = "IPv4",
        Ports = [.. ports.Select(p => new Discoveryv1EndpointPort { Name = p.Name, Port = p.Port, Protocol = p.Name == "dns" ? "UDP" : "TCP" })],
        Endpoints = [.. endpoints.Select(e => new V1Endpoint
        {
            Addresses = [e.Address],
            Conditions = new V1EndpointConditions { Ready = true },
            TargetRef = new V1ObjectReference { Kind = "Pod", Name = e.Pod, NamespaceProperty = ns },
        })],
    };

    /// <summary>A started registry, stopped when disposed; <see cref="WaitUntilAsync"/> waits on its changes.</summary>
    private sealed class StartedRegistry(KubernetesServiceRegistry registry) : IAsyncDisposable
    {
        public KubernetesServiceRegistry Value { get; } = registry;

        /// <summary>Waits until <paramref name="condition"/> holds, checking it at each change of the registry.</summary>
        public async Task WaitUntilAsync(Func<KubernetesServiceRegistry, bool> condition)
        {
            var changed = new SemaphoreSlim(0);
#pragma warning disable CA2000 // see finally
#pragma warning restore CA2000
            void OnChanged() => changed.Release();
            Value.Updated += OnChanged;
            try
            {
                using var timeout = new CancellationTokenSource(Timeout);
                while (!condition(Value))
                {
                    await changed.WaitAsync(timeout.Token);
                }
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"the registry did not reach the expected state within {Timeout.TotalSeconds:0} s");
            }
            finally
            {
                Value.Updated -= OnChanged; // not disposed: a change being raised now may still release it
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Value.StopAsync(CancellationToken.None);
            Value.Dispose();
        }
    }
}
