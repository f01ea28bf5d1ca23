using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using k8s.Models;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.KubernetesDouble;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Two control-plane replicas (<c>ztm-controlplane --kubernetes</c>, real processes) against the Kubernetes API double,
/// behind one Service address (<see cref="ServiceForwarder"/>, kube-proxy's behaviour on loopback), and two meshed
/// workloads whose sidecars prove who they are with their pods' projected tokens (TokenReview). Every replica resolves
/// the orders service from the API (its Service, EndpointSlice and Pod, seeded in the double), as in a cluster; the
/// sidecars' registrations are heartbeats only. Under steady load the
/// replica that leads — which is also the one every sidecar's streams reach — is killed, a new replica joins, and then
/// the new leader is killed too: no request fails, the sidecars reconnect to the live replica and resync (the same
/// config version, since both replicas number the same content alike), and the Lease moves each time.
/// </summary>
public sealed class HighAvailabilityEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Namespace = "ztm-system";
    private const string Shop = "shop";
    private const string OrdersClusterIp = "10.96.0.10";

    // Short but real timings, so that the test measures a takeover in seconds (the defaults are 15s/10s/2s).
    private static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan RetryPeriod = TimeSpan.FromSeconds(1);
    private static readonly string[] LeaderFlags = ["--leader-lease-duration", "3s", "--leader-renew-deadline", "2s", "--leader-retry-period", "1s"];

    // One-minute certificates: the sidecars renew (sign) every half minute or so, through whichever replica is live.
    private static readonly string[] SvidFlags = ["--svid-ttl", "1m"];

    private readonly TestMesh _mesh = new(output);
    private KubernetesApiDouble _api = null!;
    private ServiceForwarder _service = null!;
    private string _kubeconfig = null!;

    /// <summary>The orders pod's IP: a loopback address of its own, so its sidecar can listen on the injected 15006.</summary>
    private readonly string _ordersPodIp = $"127.{Random.Shared.Next(1, 255)}.{Random.Shared.Next(1, 255)}.{Random.Shared.Next(2, 255)}";

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        foreach (var (plural, kind) in new[] { ("authorizationpolicies", "AuthorizationPolicy"), ("requestauthentications", "RequestAuthentication"), ("peerauthentications", "PeerAuthentication"), ("ratelimitpolicies", "RateLimitPolicy"), ("apispecs", "ApiSpec"), ("anomalypolicies", "AnomalyPolicy") })
        {
            _api.Register(new ApiResource("security.ztm.dev", "v1", plural, kind, true) { StatusSubresource = true });
        }
        _kubeconfig = Path.Combine(_mesh.Root, "kubeconfig");
        _api.WriteKubeconfig(_kubeconfig);
        _service = new ServiceForwarder();
    }

    public async Task DisposeAsync()
    {
        await _mesh.DisposeAsync();
        await _service.DisposeAsync();
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task Killing_the_leading_replica_and_the_one_the_sidecars_reach_fails_no_request_and_moves_the_lease()
    {
        _api.Seed(AllowShopToCallOrders());
        // The orders Service as the cluster holds it: its port is the app's HTTP port (the port callers dial), and its
        // EndpointSlice's one ready endpoint is the orders pod, whose sidecar listens on podIP:15006.
        var orders = await DemoApp.StartAsync(_mesh, "orders");
        _api.Seed(ClusterObjects.Service(Shop, "orders", OrdersClusterIp, "http", orders.HttpPort, orders.HttpPort));
        _api.Seed(ClusterObjects.EndpointSlice(Shop, "orders-abcde", "orders", "http", orders.HttpPort, (_ordersPodIp, "orders-0")));
        var a = await StartReplicaAsync("controlplane-a");
        await a.Process.WaitForLineAsync("leading: controlplane-a ");

        // The workloads start while A is the only ready endpoint: every stream of theirs reaches A, the leader.
        var ordersSidecar = await StartSidecarAsync("orders", _ordersPodIp, a.BundlePath, ["--inbound-address", _ordersPodIp, "--inbound-port", "15006", .. orders.SidecarArguments]);
        var frontend = await StartSidecarAsync("frontend", "10.1.0.4", a.BundlePath, ["--inbound-port", "0"]);
        foreach (var sidecar in new[] { ordersSidecar, frontend })
        {
            await sidecar.Process.WaitForLineAsync("registered with the control plane ");
        }
        var version = Version(await ordersSidecar.Process.WaitForLineAsync("config v"));
        Assert.Equal(version, Version(await frontend.Process.WaitForLineAsync("config v")));

        var b = await StartReplicaAsync("controlplane-b");
        await b.Process.WaitForLineAsync("leader is controlplane-a ");
        Assert.Contains(b.Process.Lines, l => l.StartsWith("ztm-controlplane: CA loaded in Secret ztm-system/ztm-ca", StringComparison.Ordinal));

        var failures = new ConcurrentQueue<string>();
        var served = 0;
        var target = int.MaxValue;
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stop = new CancellationTokenSource();
        async Task LoadAsync(int worker)
        {
            using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
            using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
            for (var n = 0; await pace.WaitForNextTickAsync(CancellationToken.None) && !stop.IsCancellationRequested; n++)
            {
                try
                {
                    using var response = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/{worker}-{n}");
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        if (Interlocked.Increment(ref served) >= Volatile.Read(ref target))
                        {
                            reached.TrySetResult();
                        }
                    }
                    else
                    {
                        failures.Enqueue($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                    }
                }
                catch (HttpRequestException e)
                {
                    failures.Enqueue($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {e.Message}");
                }
            }
        }
        var load = Task.WhenAll(Enumerable.Range(0, 4).Select(LoadAsync)); // about 200 requests a second
        await frontend.Process.WaitForLineAsync("\"status\":200");

        // 1. Kill A: the leader, and the replica every sidecar's streams reach.
        var renewalMarks = new[] { ordersSidecar, frontend }.Select(s => s.Process.LineCount).ToArray();
        var takeover1 = await KillAndWaitForTakeoverAsync(a, b, [ordersSidecar, frontend], version);

        // 2. A new replica C joins (a pod rescheduled); then kill B, the leader now and the replica the sidecars reach.
        var c = await StartReplicaAsync("controlplane-c");
        await c.Process.WaitForLineAsync("leader is controlplane-b ");
        var takeover2 = await KillAndWaitForTakeoverAsync(b, c, [ordersSidecar, frontend], version);

        // Certificates renewed after A was killed were signed by B or C (the same CA, from the Secret).
        await ordersSidecar.Process.WaitForLineAsync(l => l.Contains("svid renewed ", StringComparison.Ordinal), "a renewal after the first kill", TimeSpan.FromSeconds(90), renewalMarks[0]);
        await frontend.Process.WaitForLineAsync(l => l.Contains("svid renewed ", StringComparison.Ordinal), "a renewal after the first kill", TimeSpan.FromSeconds(90), renewalMarks[1]);

        // Requests keep flowing through C for a while (registrations, resolves and renewals on it).
        Volatile.Write(ref target, Volatile.Read(ref served) + 400);
        await reached.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await stop.CancelAsync();
        await load;

        Assert.True(failures.IsEmpty, $"{failures.Count} of {failures.Count + served} requests failed:\n{string.Join('\n', failures.Take(20))}");
        output.WriteLine($"served {served} requests, none failed; takeovers after a kill: {takeover1.TotalMilliseconds:0} ms, {takeover2.TotalMilliseconds:0} ms (lease {LeaseDuration.TotalSeconds:0} s)");
        var lease = _api.Get<V1Lease>("coordination.k8s.io/v1", "leases", Namespace, "ztm-controlplane-leader")!;
        Assert.Equal("controlplane-c", lease.Spec.HolderIdentity);
        Assert.Equal(2, lease.Spec.LeaseTransitions);

        // Who leads, as ztmctl reads it (PolicyAdmin.Status), and as Prometheus does.
        using (var channel = c.Channel(c.OperatorCertificate))
        {
            var status = await new PolicyAdmin.PolicyAdminClient(channel).StatusAsync(new StatusRequest());
            Assert.Equal(("controlplane-c", "controlplane-c", version), (status.Replica, status.Leader, status.Version));
            Assert.Equal(2, status.Sidecars.Count(s => s.Connected));
        }
        using var http = new HttpClient();
        Assert.Contains("\nztm_controlplane_leader 1\n", await http.GetStringAsync(c.Metrics), StringComparison.Ordinal);
    }

    /// <summary>
    /// Anomaly state shared by two replicas as processes: every request of the burst reaches an orders sidecar connected
    /// to the replica that does not lead (the follower); the leader sees them only through the follower's counts in the
    /// API (its ConfigMap ztm-anomaly-counts-&lt;replica&gt;), throttles the caller, and pushes the restriction to the
    /// orders sidecar connected to it, which serves nobody; the follower takes the leader's state and pushes the same
    /// restriction, in the same config version, to its own; AnomalyAdmin.List (<c>ztmctl anomalies</c>) through either
    /// replica lists it. The processes run on the real clock (they take no fake one): the policy's short history and low
    /// floor keep it to seconds, and the test waits on log lines and answers, never on time. The replicas and then the
    /// sidecars start side by side; whichever replica takes the Lease leads (the default lease, so that a slow machine
    /// does not move it mid-test).
    /// </summary>
    [Fact]
    public async Task A_burst_seen_only_through_the_replica_that_does_not_lead_is_throttled_and_both_replicas_push_and_list_it()
    {
        _api.Seed(AllowShopToCallOrders());
        _api.Seed(new System.Text.Json.Nodes.JsonObject
        {
            ["apiVersion"] = "security.ztm.dev/v1",
            ["kind"] = "AnomalyPolicy",
            ["metadata"] = new System.Text.Json.Nodes.JsonObject { ["name"] = "orders-anomalies", ["namespace"] = Shop },
            ["spec"] = System.Text.Json.Nodes.JsonNode.Parse("""{"selector":{"service":"orders"},"mode":"Enforce","minimumHistory":"2s","minimumRate":60,"throttleRate":1,"quarantineAfter":"1h","coolOff":"1h"}"""),
        });
        var orders = await DemoApp.StartAsync(_mesh, "orders");
        // Callers reach only orders-0, whose sidecar reports to the follower; orders-1's sidecar (on the leader) serves nobody.
        _api.Seed(ClusterObjects.Service(Shop, "orders", OrdersClusterIp, "http", orders.HttpPort, orders.HttpPort));
        _api.Seed(ClusterObjects.EndpointSlice(Shop, "orders-abcde", "orders", "http", orders.HttpPort, (_ordersPodIp, "orders-0")));
        var replicas = await Task.WhenAll(StartReplicaAsync("controlplane-a", []), StartReplicaAsync("controlplane-b", []));
        // Both replicas name the Lease's holder once they see it (the holder too, before it says it leads).
        var seen = await replicas[0].Process.WaitForLineAsync("leader is ");
        var leader = replicas.Single(r => seen.Contains($"leader is {r.Process.Name} ", StringComparison.Ordinal));
        var follower = replicas.Single(r => r != leader);
        await leader.Process.WaitForLineAsync($"leading: {leader.Process.Name} ");
        await follower.Process.WaitForLineAsync($"leader is {leader.Process.Name} ");

        var otherPodIp = $"127.{Random.Shared.Next(1, 255)}.{Random.Shared.Next(1, 255)}.{Random.Shared.Next(2, 255)}";
        var sidecars = await Task.WhenAll(
            StartSidecarAsync("orders", _ordersPodIp, leader.BundlePath, ["--inbound-address", _ordersPodIp, "--inbound-port", "15006", .. orders.SidecarArguments], follower.Address),
            StartSidecarAsync("orders", otherPodIp, leader.BundlePath, ["--inbound-address", otherPodIp, "--inbound-port", "15006", .. orders.SidecarArguments], leader.Address, pod: "orders-1"),
            StartSidecarAsync("frontend", "10.1.0.4", leader.BundlePath, ["--inbound-port", "0"], follower.Address));
        var (onFollower, onLeader, frontend) = (sidecars[0], sidecars[1], sidecars[2]);
        await Task.WhenAll(sidecars.Select(s => s.Process.WaitForLineAsync("registered with the control plane ")));
        await Task.WhenAll(sidecars.Select(s => s.Process.WaitForLineAsync("config v")));

        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}/orders/1";
        // The caller's normal: one request a second for a few seconds (this paces traffic, it waits for nothing).
        using (var pace = new PeriodicTimer(TimeSpan.FromSeconds(1)))
        {
            for (var i = 0; i < 4; i++)
            {
                using var normal = await http.GetAsync(url);
                Assert.Equal(HttpStatusCode.OK, normal.StatusCode);
                await pace.WaitForNextTickAsync();
            }
        }

        // The jump, until orders-0's sidecar refuses it by anomaly response: the follower pushes what the leader decided.
        // Three hand-overs of up to a window (10 s) each: the follower's counts, the leader's read, the follower's take.
        var jump = Stopwatch.StartNew();
        var sent = 0;
        string body;
        while (true)
        {
            Assert.True(jump.Elapsed < TimeSpan.FromSeconds(90), $"not throttled 90 s after the jump ({sent} requests); {SharedAnomalyState()}");
            using var response = await http.GetAsync(url);
            sent++;
            if (response.StatusCode != HttpStatusCode.OK)
            {
                body = await response.Content.ReadAsStringAsync();
                Assert.True(response.StatusCode == HttpStatusCode.TooManyRequests, $"{response.StatusCode}: {body}");
                break;
            }
        }
        Assert.Contains("throttled by anomaly response to 1/min", body, StringComparison.Ordinal);
        output.WriteLine($"throttled {jump.Elapsed.TotalSeconds:0.0} s after the jump ({sent} requests, all through {follower.Process.Name}, which does not lead)");

        // Only the leader judged; it pushed the same restrictions to orders-1, which the follower's sidecars never reached:
        // the same config version on both. Two restrictions: the caller on its route and on every route (*).
        Assert.Contains(leader.Process.Lines, l => l.Contains("Normal -> Throttled", StringComparison.Ordinal) && l.Contains(" route=* ", StringComparison.Ordinal));
        Assert.DoesNotContain(follower.Process.Lines, l => l.Contains("Normal -> Throttled", StringComparison.Ordinal));
        static bool Restricted(string line) => line.Contains("config v", StringComparison.Ordinal) && line.Contains(" applied", StringComparison.Ordinal)
            && line.Contains(" 2 caller restrictions", StringComparison.Ordinal);
        var onLeaderVersion = Version(await onLeader.Process.WaitForLineAsync(Restricted, "the restriction on the leader's sidecar", TimeSpan.FromSeconds(30)));
        var onFollowerVersion = Version(await onFollower.Process.WaitForLineAsync(Restricted, "the restriction on the follower's sidecar", TimeSpan.FromSeconds(30)));
        Assert.Equal(onLeaderVersion, onFollowerVersion);
        Assert.NotNull(_api.Get<V1ConfigMap>("v1", "configmaps", Namespace, $"ztm-anomaly-counts-{follower.Process.Name}"));

        // 'ztmctl anomalies' through either replica lists it.
        foreach (var (replica, leading) in new[] { (leader, true), (follower, false) })
        {
            using var channel = replica.Channel(replica.OperatorCertificate);
            var listed = await new AnomalyAdmin.AnomalyAdminClient(channel).ListAsync(new AnomalyListRequest());
            Assert.Equal((replica.Process.Name, leading), (listed.Replica, listed.Leading));
            var current = Assert.Single(listed.Current, c => c.Caller == DataPlaneFixture.FrontendId && c.Route == "*");
            Assert.Equal(("throttled", "shop/orders", "shop/orders-anomalies"), (current.State, current.Workload, current.Policy));
        }
    }

    /// <summary>
    /// Kills <paramref name="leader"/> (SIGKILL: no release of the Lease) and removes it from the Service, then waits
    /// for <paramref name="next"/> to lead and for every sidecar to resync on it with the same config version.
    /// </summary>
    private async Task<TimeSpan> KillAndWaitForTakeoverAsync(ControlPlane leader, ControlPlane next, Sidecar[] sidecars, string version)
    {
        var marks = sidecars.Select(s => s.Process.LineCount).ToArray();
        var name = leader.Process.Name;
        var killed = Stopwatch.StartNew();
        leader.Process.Kill();
        _service.RemoveEndpoint(leader.Address); // the endpoint controller takes the dead pod out
        await next.Process.WaitForLineAsync($"leading: {next.Process.Name} ", LeaseDuration * 4);
        var takeover = killed.Elapsed;
        // Within a lease duration of the last renewal the follower saw (a retry period old at most), plus its next try.
        Assert.True(takeover < LeaseDuration + (3 * RetryPeriod) + TimeSpan.FromSeconds(1), $"{next.Process.Name} took the Lease {takeover.TotalMilliseconds:0} ms after {name} was killed");
        for (var i = 0; i < sidecars.Length; i++)
        {
            var sidecar = sidecars[i].Process;
            await sidecar.WaitForLineAsync(l => l.Contains("config stream to the control plane broke", StringComparison.Ordinal), "the broken stream", after: marks[i]);
            var resynced = await sidecar.WaitForLineAsync(l => l.Contains("config v", StringComparison.Ordinal) && l.Contains(" applied", StringComparison.Ordinal), "the resync", after: marks[i]);
            Assert.Equal(version, Version(resynced)); // same content, same version, whichever replica sent it
        }
        return takeover;
    }

    /// <summary>What the replicas shared through the API, for a failure's message: the anomaly ConfigMaps and the calls on them.</summary>
    private string SharedAnomalyState()
    {
        var maps = new[] { "ztm-anomalies", "ztm-anomaly-counts-controlplane-a", "ztm-anomaly-counts-controlplane-b" }
            .Select(name => $"{name}: {(_api.Get<V1ConfigMap>("v1", "configmaps", Namespace, name) is { } map ? string.Join(", ", map.Data?.Select(d => $"{d.Key}={d.Value}") ?? []) : "none")}");
        var calls = _api.Requests.Where(r => (r.Path.Contains("/configmaps", StringComparison.Ordinal) && r.Path.Contains("anomal", StringComparison.Ordinal)) || r.Query.Contains("anomaly-counts", StringComparison.Ordinal))
            .GroupBy(r => $"{r.Method} {r.Path}{r.Query} {r.Status}").Select(g => $"{g.Count()}x {g.Key}");
        var state = _api.Get<V1ConfigMap>("v1", "configmaps", Namespace, "ztm-anomalies")?.BinaryData is { } binary && binary.TryGetValue("state.json.gz", out var zipped)
            ? new StreamReader(new System.IO.Compression.GZipStream(new MemoryStream(zipped), System.IO.Compression.CompressionMode.Decompress)).ReadToEnd()
            : "none";
        return $"shared state: {string.Join("; ", maps)}\ncalls: {string.Join("\n", calls)}\nstate: {state}";
    }

    private static string Version(string line) => line[line.IndexOf("config v", StringComparison.Ordinal)..].Split(' ')[1];

    /// <param name="flags">Leader-election and SVID flags; the HA takeover's short timings unless given.</param>
    private async Task<ControlPlane> StartReplicaAsync(string name, string[]? flags = null)
    {
        var dataDir = Path.Combine(_mesh.Root, name);
        var environment = new Dictionary<string, string>(_mesh.Environment)
        {
            ["KUBECONFIG"] = _kubeconfig,
            ["POD_NAME"] = name,
            ["POD_NAMESPACE"] = Namespace,
            ["ZTM_CONFIG"] = Path.Combine(dataDir, "operator", "config"),
        };
        var process = _mesh.Track(MeshProcess.Start(name, Executables.ControlPlane,
            ["--kubernetes", "--data-dir", dataDir, "--listen", "127.0.0.1", "--port", "0", "--metrics-port", "0", .. flags ?? [.. LeaderFlags, .. SvidFlags]], output, environment));
        // The registry is listed before the replica serves: it resolves orders from the API from its first call on.
        await process.WaitForLineAsync("registry listed endpointslices count=1 ");
        var listening = await process.WaitForLineAsync("ztm-controlplane: listening on ");
        var address = new Uri(listening[listening.IndexOf("https://", StringComparison.Ordinal)..].Trim());
        var metrics = await process.WaitForLineAsync("ztm-controlplane: metrics listening on ");
        _service.AddEndpoint(address); // ready: the Service sends new connections to it too
        return new ControlPlane(_mesh, process, address, dataDir) { Metrics = new Uri(metrics[metrics.IndexOf("http://", StringComparison.Ordinal)..].Trim()) };
    }

    /// <summary>
    /// A sidecar of the meshed pod <c>shop/NAME-0</c> (service account NAME, <paramref name="podIp"/>), reaching the
    /// control plane through the Service with its pod's projected token.
    /// </summary>
    /// <param name="controlPlane">A replica of its own instead of the Service.</param>
    /// <param name="pod">The pod's name; NAME-0 by default.</param>
    private async Task<Sidecar> StartSidecarAsync(string name, string podIp, string bundlePath, string[] extraArgs, Uri? controlPlane = null, string? pod = null)
    {
        pod ??= name + "-0";
        _api.Seed(ClusterObjects.Pod(Shop, pod, name, podIp, meshed: true));
        var tokenFile = Path.Combine(_mesh.Root, pod + ".token");
        await File.WriteAllTextAsync(tokenFile, _api.IssuePodToken(Shop, pod, "ztm-controlplane"));
        var process = _mesh.Track(MeshProcess.Start("sidecar-" + pod, Executables.Sidecar,
            ["--control-plane", (controlPlane ?? _service.Address).ToString(), "--trust-bundle", bundlePath, "--service-account-token-file", tokenFile,
                "--admin-port", "0", "--outbound-port", "0", .. extraArgs],
            output, _mesh.Environment));
        var listening = await process.WaitForLineAsync("ztm-sidecar: admin listening on ");
        var start = listening.IndexOf("http://", StringComparison.Ordinal);
        var admin = new Uri(listening[start..listening.IndexOf(' ', start)]);
        var inbound = (await process.WaitForLineAsync("ztm-sidecar: inbound listening on "))["ztm-sidecar: inbound listening on ".Length..].Split(' ')[0];
        var outbound = (await process.WaitForLineAsync("ztm-sidecar: outbound listening on "))["ztm-sidecar: outbound listening on ".Length..].Trim();
        return new Sidecar(process, admin, IPEndPoint.Parse(inbound), IPEndPoint.Parse(outbound));
    }

    private static System.Text.Json.Nodes.JsonObject AllowShopToCallOrders() => new()
    {
        ["apiVersion"] = "security.ztm.dev/v1",
        ["kind"] = "AuthorizationPolicy",
        ["metadata"] = new System.Text.Json.Nodes.JsonObject { ["name"] = "orders-from-shop", ["namespace"] = Shop },
        ["spec"] = System.Text.Json.Nodes.JsonNode.Parse("""{"selector":{"service":"orders"},"action":"ALLOW","rules":[{"from":[{"source":{"namespaces":["shop"]}}]}]}"""),
    };
}
