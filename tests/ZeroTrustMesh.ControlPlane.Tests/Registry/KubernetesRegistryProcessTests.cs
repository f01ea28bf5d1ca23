using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Registry;

/// <summary>
/// <c>ztm-controlplane --kubernetes</c> as a process at the API double, and two real <c>ztm-sidecar</c>s attested with
/// their pods' tokens, as injected: the caller's app dials a Service's ClusterIP and port (through its sidecar as HTTP
/// proxy), its sidecar resolves that address through the control plane's registry (the Service, its EndpointSlice, the
/// pod's service account) and reaches the destination pod's sidecar on podIP:15006, which forwards to the target port.
/// </summary>
public sealed class KubernetesRegistryProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private const string OrdersClusterIp = "10.96.0.10";
    private const string LegacyClusterIp = "10.96.0.20";

    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-k8s-registry-process-").FullName;

    /// <summary>The orders pod's IP: a loopback address of its own, so its sidecar can listen on the real 15006.</summary>
    private readonly string _ordersPodIp = $"127.{Random.Shared.Next(1, 255)}.{Random.Shared.Next(1, 255)}.{Random.Shared.Next(2, 255)}";

    private KubernetesApiDouble _api = null!;
    private WebApplication _app = null!;
    private int _appPort;

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        Policy.PolicyCustomResources.Register(_api);

        // The orders application: says who called it (the identity header its sidecar sets) and which Host it saw.
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        _app = builder.Build();
        _app.Run(context => context.Response.WriteAsync($"orders saw {context.Request.Headers["x-ztm-client-identity"]} via {context.Request.Host}"));
        await _app.StartAsync();
        _appPort = new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
    }

    public async Task DisposeAsync()
    {
        await _app.DisposeAsync();
        await _api.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_call_to_a_cluster_ip_reaches_the_pod_behind_the_service_and_a_pod_without_a_sidecar_is_refused()
    {
        _api.Seed(JsonNode.Parse("""
            {"apiVersion":"security.ztm.dev/v1","kind":"AuthorizationPolicy","metadata":{"name":"orders-from-frontend","namespace":"shop"},
             "spec":{"selector":{"service":"orders"},"action":"ALLOW","rules":[{"from":[{"source":{"principals":["spiffe://cluster.local/ns/shop/sa/frontend"]}}]}]}}
            """)!.AsObject());
        _api.Seed(ClusterObjects.Pod("shop", "frontend-1", "frontend", "10.1.0.4", meshed: true));
        _api.Seed(ClusterObjects.Pod("shop", "orders-1", "orders", _ordersPodIp, meshed: true));
        _api.Seed(ClusterObjects.Pod("shop", "legacy-1", "legacy", "10.1.0.9", meshed: false));
        // Service port 80 → the app's port, named as a target port so the EndpointSlice resolves it.
        _api.Seed(ClusterObjects.Service("shop", "orders", OrdersClusterIp, "http", 80, "http"));
        _api.Seed(ClusterObjects.EndpointSlice("shop", "orders-abcde", "orders", "http", _appPort, (_ordersPodIp, "orders-1")));
        _api.Seed(ClusterObjects.Service("shop", "legacy", LegacyClusterIp, "http", 80, "http"));
        _api.Seed(ClusterObjects.EndpointSlice("shop", "legacy-abcde", "legacy", "http", 8080, ("10.1.0.9", "legacy-1")));

        var kubeconfig = Path.Combine(_dir, "kubeconfig");
        _api.WriteKubeconfig(kubeconfig);
        var data = Path.Combine(_dir, "data");
        var environment = new Dictionary<string, string> { ["KUBECONFIG"] = kubeconfig, ["HOME"] = _dir };
        await using var controlPlane = ExecutableProcess.Start("controlplane", ExecutableProcess.ControlPlane,
            ["--kubernetes", "--listen", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--data-dir", data, "--operator-config", Path.Combine(_dir, "config")],
            environment, output);
        await controlPlane.WaitForLineAsync(l => l.StartsWith("ztm-controlplane: service registry: the cluster's Services, EndpointSlices and Pods", StringComparison.Ordinal), "the registry line");
        var listening = await controlPlane.WaitForLineAsync(l => l.StartsWith("ztm-controlplane: listening on ", StringComparison.Ordinal), "its address");
        var address = listening["ztm-controlplane: listening on ".Length..];

        await using var orders = StartSidecar("orders", address, data, environment, "orders-1",
            ["--inbound-address", _ordersPodIp, "--inbound-port", "15006", "--app-port", _appPort.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await using var frontend = StartSidecar("frontend", address, data, environment, "frontend-1", ["--inbound-port", "0"]);
        await orders.WaitForLineAsync(l => l.Contains(" applied: 1 resource(s) for this workload", StringComparison.Ordinal), "its policy");
        await frontend.WaitForLineAsync(l => l.Contains("svid issued spiffe_id=" + Frontend, StringComparison.Ordinal), "its certificate");
        var outbound = await frontend.WaitForLineAsync(l => l.StartsWith("ztm-sidecar: outbound listening on 127.0.0.1:", StringComparison.Ordinal), "its outbound port");
        var proxy = new Uri("http://" + outbound["ztm-sidecar: outbound listening on ".Length..]);

        using var client = new HttpClient(new SocketsHttpHandler { Proxy = new WebProxy(proxy), UseProxy = true }) { Timeout = ExecutableProcess.Timeout };
        using (var response = await client.GetAsync(new Uri($"http://{OrdersClusterIp}/orders")))
        {
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {body}");
            Assert.Equal($"orders saw {Frontend} via {OrdersClusterIp}", body);
        }
        // The same Service by name and port: the port maps to the target port the same way.
        using (var response = await client.GetAsync(new Uri("http://orders.shop.svc.cluster.local:80/orders")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        // A port the Service does not have is not guessed at.
        using (var response = await client.GetAsync(new Uri($"http://{OrdersClusterIp}:9999/orders")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }
        // A Service whose only pod has no sidecar: the mesh sends no plaintext.
        using (var response = await client.GetAsync(new Uri($"http://{LegacyClusterIp}/")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Contains("without a sidecar", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        Assert.Contains(orders.Lines, l => l.Contains($"svid issued spiffe_id={Orders} ", StringComparison.Ordinal));
    }

    private ExecutableProcess StartSidecar(string name, string controlPlane, string data, IReadOnlyDictionary<string, string> environment, string pod, string[] args)
    {
        var tokenFile = Path.Combine(_dir, $"{name}-token");
        File.WriteAllText(tokenFile, _api.IssuePodToken("shop", pod, ControlPlaneOptions.DefaultTokenAudience));
        return ExecutableProcess.Start(name, ExecutableProcess.Sidecar,
            ["--control-plane", controlPlane, "--trust-bundle", Path.Combine(data, "bundle.pem"), "--service-account-token-file", tokenFile,
             "--admin-port", "0", "--outbound-port", "0", .. args],
            environment, output);
    }
}
