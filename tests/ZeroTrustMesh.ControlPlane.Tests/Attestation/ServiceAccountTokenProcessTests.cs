using k8s.Models;
using Xunit.Abstractions;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Attestation;

/// <summary>
/// <c>ztm-controlplane --kubernetes</c> as a process with <c>$KUBECONFIG</c> at the Kubernetes API double, and a real
/// <c>ztm-sidecar</c> proving who it is with its pod's projected token (<c>--service-account-token-file</c>), as injected.
/// </summary>
public sealed class ServiceAccountTokenProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-psat-process-").FullName;
    private KubernetesApiDouble _api = null!;

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        Policy.PolicyCustomResources.Register(_api); // --kubernetes reads policy from these
    }

    public async Task DisposeAsync()
    {
        await _api.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_sidecar_gets_its_certificate_with_its_pods_token_after_the_api_server_recovers_and_again_after_a_restart()
    {
        _api.Seed(new V1Pod
        {
            ApiVersion = "v1",
            Kind = "Pod",
            Metadata = new V1ObjectMeta { Name = "orders-6f7c9", NamespaceProperty = "shop" },
            Spec = new V1PodSpec { ServiceAccountName = "orders", Containers = [new V1Container { Name = "app", Image = "orders:1" }] },
            Status = new V1PodStatus { Phase = "Running" },
        });
        var token = _api.IssuePodToken("shop", "orders-6f7c9", ControlPlaneOptions.DefaultTokenAudience);
        var tokenFile = Path.Combine(_dir, "token");
        await File.WriteAllTextAsync(tokenFile, token); // as kubelet writes it: no newline
        var kubeconfig = Path.Combine(_dir, "kubeconfig");
        _api.WriteKubeconfig(kubeconfig);
        var data = Path.Combine(_dir, "data");
        // The API server fails the first TokenReview: the sidecar is told UNAVAILABLE and retries.
        _api.Fail(r => r.Path.Value!.EndsWith("/tokenreviews", StringComparison.Ordinal), 1, 503, "ServiceUnavailable");

        await using var controlPlane = ExecutableProcess.Start("controlplane", ExecutableProcess.ControlPlane,
            ["--kubernetes", "--listen", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--data-dir", data, "--operator-config", Path.Combine(_dir, "config")],
            new Dictionary<string, string> { ["KUBECONFIG"] = kubeconfig, ["HOME"] = _dir }, output);
        await controlPlane.WaitForLineAsync(l => l == $"ztm-controlplane: Kubernetes API {_api.Address.GetLeftPart(UriPartial.Authority)} ($KUBECONFIG): sidecars may prove who they are with a projected service-account token for audience 'ztm-controlplane' (TokenReview)", "the Kubernetes line");
        var listening = await controlPlane.WaitForLineAsync(l => l.StartsWith("ztm-controlplane: listening on ", StringComparison.Ordinal), "its address");
        var address = listening["ztm-controlplane: listening on ".Length..];

        string[] sidecarArgs =
        [
            "--control-plane", address, "--trust-bundle", Path.Combine(data, "bundle.pem"), "--service-account-token-file", tokenFile,
            "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0",
        ];
        var sidecarEnvironment = new Dictionary<string, string> { ["HOME"] = _dir };
        await using (var sidecar = ExecutableProcess.Start("sidecar", ExecutableProcess.Sidecar, sidecarArgs, sidecarEnvironment, output))
        {
            var failed = await sidecar.WaitForLineAsync(l => l.Contains("svid sign failed attempt=1 ", StringComparison.Ordinal), "the failed first attempt");
            Assert.Contains("Unavailable", failed, StringComparison.Ordinal);
            await sidecar.WaitForLineAsync(l => l.Contains($"svid issued spiffe_id={Orders} ", StringComparison.Ordinal), "its certificate");
            Assert.False(sidecar.Exited.IsCompleted, "the sidecar exited");
            Assert.DoesNotContain(sidecar.Lines, l => l.Contains(token, StringComparison.Ordinal));
        }

        // A restarted sidecar (the pod's container restarted) attests again with the same, current token.
        await using (var restarted = ExecutableProcess.Start("sidecar-restarted", ExecutableProcess.Sidecar, sidecarArgs, sidecarEnvironment, output))
        {
            await restarted.WaitForLineAsync(l => l.Contains($"svid issued spiffe_id={Orders} ", StringComparison.Ordinal), "its certificate");
        }

        await controlPlane.WaitForLineAsync(l => l.Contains("svid not issued call=sign code=Unavailable ", StringComparison.Ordinal), "the unavailable signing");
        var issued = controlPlane.Lines.Where(l => l.Contains($"svid issued spiffe_id={Orders} ", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, issued.Count);
        Assert.All(issued, l => Assert.Contains(" via=service_account_token ", l, StringComparison.Ordinal));
        Assert.DoesNotContain(controlPlane.Lines, l => l.Contains(token, StringComparison.Ordinal) || l.Contains(token.Split('.')[^1], StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(new[] { "--kubernetes" }, true, "--kubernetes needs the Kubernetes API: $KUBECONFIG names {missing}, which does not exist")]
    [InlineData(new[] { "--token-audience", "vault" }, false, "--token-audience needs --kubernetes (service-account tokens are checked through the Kubernetes API)")]
    [InlineData(new[] { "--kubernetes", "--token-audience", "" }, false, "--token-audience '' must be a non-empty string without spaces")]
    public async Task Kubernetes_flags_that_cannot_work_exit_2_with_one_line(string[] args, bool missingKubeconfig, string error)
    {
        var kubeconfig = Path.Combine(_dir, missingKubeconfig ? "missing" : "kubeconfig");
        _api.WriteKubeconfig(Path.Combine(_dir, "kubeconfig"));
        await using var process = ExecutableProcess.Start("controlplane", ExecutableProcess.ControlPlane,
            ["--data-dir", Path.Combine(_dir, "data"), "--port", "0", "--metrics-port", "0", .. args],
            new Dictionary<string, string> { ["KUBECONFIG"] = kubeconfig, ["HOME"] = _dir }, output);

        Assert.Equal(2, await process.Exited.WaitAsync(ExecutableProcess.Timeout));
        Assert.Equal([$"ztm-controlplane: {error.Replace("{missing}", kubeconfig, StringComparison.Ordinal)}"], process.Lines);
    }
}
