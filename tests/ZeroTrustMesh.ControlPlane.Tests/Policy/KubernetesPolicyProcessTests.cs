using System.Text.Json.Nodes;
using Xunit.Abstractions;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Policy;

/// <summary>
/// <c>ztm-controlplane --kubernetes</c> as a process at the API double, and <c>ztmctl</c> as an operator runs it: policy
/// comes from the custom resources, <c>ztmctl get</c> shows it, and <c>ztmctl apply</c> says to use kubectl (exit 2).
/// </summary>
public sealed class KubernetesPolicyProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-k8s-policy-process-").FullName;
    private KubernetesApiDouble _api = null!;

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        PolicyCustomResources.Register(_api);
    }

    public async Task DisposeAsync()
    {
        await _api.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Ztmctl_get_shows_the_custom_resources_and_apply_says_policy_is_managed_with_kubectl()
    {
        _api.Seed(JsonNode.Parse("""
            {"apiVersion":"security.ztm.dev/v1","kind":"AuthorizationPolicy","metadata":{"name":"orders-from-frontend","namespace":"shop"},
             "spec":{"selector":{"service":"orders"},"action":"ALLOW","rules":[{"from":[{"source":{"principals":["spiffe://cluster.local/ns/shop/sa/frontend"]}}]}]}}
            """)!.AsObject());
        var kubeconfig = Path.Combine(_dir, "kubeconfig");
        _api.WriteKubeconfig(kubeconfig);
        var config = Path.Combine(_dir, "config");
        var environment = new Dictionary<string, string> { ["KUBECONFIG"] = kubeconfig, ["HOME"] = _dir };
        await using var controlPlane = ExecutableProcess.Start("controlplane", ExecutableProcess.ControlPlane,
            ["--kubernetes", "--listen", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--data-dir", Path.Combine(_dir, "data"), "--operator-config", config],
            environment, output);
        await controlPlane.WaitForLineAsync(l => l.StartsWith("ztm-controlplane: listening on ", StringComparison.Ordinal), "its address");

        await using (var get = ExecutableProcess.Start("ztmctl-get", ExecutableProcess.Ztmctl, ["get", "authorizationpolicies", "-n", "shop", "--config", config], environment, output))
        {
            Assert.Equal(0, await get.Exited.WaitAsync(ExecutableProcess.Timeout));
            Assert.Contains(get.Lines, l => l.Contains("orders-from-frontend", StringComparison.Ordinal));
        }

        await using (var yaml = ExecutableProcess.Start("ztmctl-get-yaml", ExecutableProcess.Ztmctl, ["get", "-o", "yaml", "--config", config], environment, output))
        {
            Assert.Equal(0, await yaml.Exited.WaitAsync(ExecutableProcess.Timeout));
            var document = JsonNode.Parse(Assert.Single(yaml.Lines, l => l.StartsWith('{')))!;
            Assert.Equal("orders-from-frontend", document["metadata"]!["name"]!.GetValue<string>());
        }

        var policy = Path.Combine(_dir, "policy.yaml");
        await File.WriteAllTextAsync(policy, "apiVersion: security.ztm.dev/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: shop}\nspec: {mode: STRICT}\n");
        await using var apply = ExecutableProcess.Start("ztmctl-apply", ExecutableProcess.Ztmctl, ["apply", "-f", policy, "--config", config], environment, output);
        Assert.Equal(2, await apply.Exited.WaitAsync(ExecutableProcess.Timeout));
        Assert.Contains(apply.Lines, l => l.StartsWith("ztmctl: policy is managed with kubectl in Kubernetes", StringComparison.Ordinal));
    }
}
