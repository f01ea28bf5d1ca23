using System.Text.Json.Nodes;
using k8s.Models;
using Xunit.Abstractions;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Ca;

/// <summary>
/// A CA rotation as an operator runs it, with two <c>ztm-controlplane --kubernetes</c> replicas and a <c>ztm-sidecar</c>
/// on each, as processes against the Kubernetes API double: the sidecar of the replica that does not lead goes down
/// holding a live certificate, and the leader's activation waits for it — named in <c>ztmctl ca status</c> from either
/// replica — until it comes back to that replica and follows the new bundle.
/// </summary>
public sealed class RotationAcrossReplicasProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private static readonly string[] Timing = ["--ca-rotation-poll", "0.5s", "--ca-rotation-reconnect-grace", "1s", "--replica-report-timeout", "30s"];

    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-rotation-replicas-process-").FullName;
    private KubernetesApiDouble _api = null!;
    private string _kubeconfig = null!;

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        Policy.PolicyCustomResources.Register(_api);
        _kubeconfig = Path.Combine(_dir, "kubeconfig");
        _api.WriteKubeconfig(_kubeconfig);
        foreach (var workload in new[] { "orders", "frontend" })
        {
            _api.Seed(ClusterObjects.Pod("shop", workload + "-1", workload, null, meshed: true));
        }
    }

    public async Task DisposeAsync()
    {
        await _api.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Activation_waits_for_the_sidecar_of_the_replica_that_does_not_lead_and_ca_status_counts_across_replicas()
    {
        await using var a = StartControlPlane("controlplane-a");
        await a.WaitForLineAsync(l => l.Contains("] leading: controlplane-a ", StringComparison.Ordinal), "its Lease");
        var addressA = await AddressAsync(a);
        await using var b = StartControlPlane("controlplane-b");
        var addressB = await AddressAsync(b);
        await using var orders = StartSidecar("orders", addressA);
        await using (var frontend = StartSidecar("frontend", addressB))
        {
            await orders.WaitForLineAsync(l => l.Contains(" applied: 0 resource(s) for this workload", StringComparison.Ordinal), "orders' first config");
            await frontend.WaitForLineAsync(l => l.Contains(" applied: 0 resource(s) for this workload", StringComparison.Ordinal), "frontend's first config");
        }
        // frontend is gone, holding a live certificate and a bundle without the new root; it was B's.
        await b.WaitForLineAsync(l => l.Contains($"config stream closed spiffe_id={Frontend}", StringComparison.Ordinal), "frontend's stream closing on B");

        await using (var rotate = Ztmctl("ztmctl-ca-rotate", "controlplane-a", "ca", "rotate"))
        {
            Assert.Equal(0, await rotate.Exited.WaitAsync(ExecutableProcess.Timeout));
        }

        // The leader waits for frontend alone, once B serves the new bundle and orders (A's) follows it.
        var blocker = $"{Frontend} (not connected to replica controlplane-b since ";
        await a.WaitForLineAsync(l => l.Contains("ca rotation prepared waits: ", StringComparison.Ordinal) && l.Contains(blocker, StringComparison.Ordinal)
            && !l.Contains(Orders, StringComparison.Ordinal) && !l.Contains("replica controlplane-b (serves", StringComparison.Ordinal), "activation held by frontend alone");
        await using (var status = Ztmctl("ztmctl-ca-status", "controlplane-a", "ca", "status"))
        {
            Assert.Equal(0, await status.Exited.WaitAsync(ExecutableProcess.Timeout));
            Assert.Contains("phase:         prepared since ", status.Lines[0], StringComparison.Ordinal);
            Assert.Contains(status.Lines, l => l.StartsWith($"blocked by:    {blocker}", StringComparison.Ordinal));
            Assert.Contains("following:     1 of 2 sidecar(s) follow trust bundle 2 (across 2 replica(s): controlplane-a, controlplane-b)", status.Lines);
            Assert.Contains(status.Lines, l => l.StartsWith(Frontend, StringComparison.Ordinal) && l.EndsWith(" controlplane-b", StringComparison.Ordinal));
            Assert.Contains(status.Lines, l => l.StartsWith(Orders, StringComparison.Ordinal) && l.EndsWith(" controlplane-a", StringComparison.Ordinal));
        }
        Assert.DoesNotContain(a.Lines, l => l.Contains("ca rotation activate ", StringComparison.Ordinal));

        // frontend comes back, to B, and follows bundle 2: the leader activates, and B follows the step.
        await using var frontendAgain = StartSidecar("frontend", addressB);
        await a.WaitForLineAsync(l => l.Contains("ca rotation activate ", StringComparison.Ordinal), "activation");
        await b.WaitForLineAsync(l => l.Contains("ca rotation followed phase=active ", StringComparison.Ordinal), "B following the activation");

        // B answers ca status with the same union.
        await using var fromB = Ztmctl("ztmctl-ca-status-json", "controlplane-b", "ca", "status", "-o", "json");
        Assert.Equal(0, await fromB.Exited.WaitAsync(ExecutableProcess.Timeout));
        var json = JsonNode.Parse(string.Join('\n', fromB.Lines))!;
        Assert.Equal("active", json["phase"]!.GetValue<string>());
        Assert.Equal((2u, 2u), (json["sidecarsCounted"]!.GetValue<uint>(), json["sidecarsFollowing"]!.GetValue<uint>()));
        Assert.Equal(["controlplane-b", "controlplane-a"], json["replicas"]!.AsArray().Select(r => r!["name"]!.GetValue<string>()));
        Assert.Equal([(Frontend, "controlplane-b"), (Orders, "controlplane-a")],
            json["sidecars"]!.AsArray().Select(s => (s!["spiffeId"]!.GetValue<string>(), s["replica"]!.GetValue<string>())));
        Assert.NotNull(_api.Get<V1ConfigMap>("v1", "configmaps", "ztm-system", "ztm-sidecars-controlplane-a"));
    }

    private ExecutableProcess StartControlPlane(string name) => ExecutableProcess.Start(name, ExecutableProcess.ControlPlane,
        ["--kubernetes", "--namespace", "ztm-system", "--listen", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--data-dir", Path.Combine(_dir, name),
         "--operator-config", Path.Combine(_dir, name, "config"), .. Timing],
        new Dictionary<string, string> { ["KUBECONFIG"] = _kubeconfig, ["HOME"] = _dir, ["POD_NAME"] = name }, output);

    private static async Task<string> AddressAsync(ExecutableProcess controlPlane) =>
        (await controlPlane.WaitForLineAsync(l => l.StartsWith("ztm-controlplane: listening on ", StringComparison.Ordinal), "its address"))["ztm-controlplane: listening on ".Length..];

    private ExecutableProcess StartSidecar(string workload, string controlPlane)
    {
        var token = Path.Combine(_dir, workload + ".token");
        File.WriteAllText(token, _api.IssuePodToken("shop", workload + "-1", ControlPlaneOptions.DefaultTokenAudience));
        return ExecutableProcess.Start("sidecar-" + workload, ExecutableProcess.Sidecar,
            ["--control-plane", controlPlane, "--trust-bundle", Path.Combine(_dir, "controlplane-a", "bundle.pem"), "--service-account-token-file", token,
             "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0"],
            new Dictionary<string, string> { ["HOME"] = _dir }, output);
    }

    private ExecutableProcess Ztmctl(string name, string replica, params string[] args) =>
        ExecutableProcess.Start(name, ExecutableProcess.Ztmctl, [.. args, "--config", Path.Combine(_dir, replica, "config")], new Dictionary<string, string> { ["HOME"] = _dir }, output);
}
