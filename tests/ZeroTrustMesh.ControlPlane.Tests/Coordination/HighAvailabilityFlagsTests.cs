using Xunit.Abstractions;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Coordination;

/// <summary>The Kubernetes-mode flags of the shared state: a value that cannot work exits 2 with one line saying why.</summary>
public sealed class HighAvailabilityFlagsTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-ha-flags-").FullName;
    private KubernetesApiDouble _api = null!;

    public async Task InitializeAsync() => _api = await KubernetesApiDouble.StartAsync();

    public async Task DisposeAsync()
    {
        await _api.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Theory]
    [InlineData(new[] { "--leader-lease-duration", "10s", "--leader-renew-deadline", "10s" }, "--leader-renew-deadline (10s) must be shorter than --leader-lease-duration (10s): the leader must stop before another may take over")]
    [InlineData(new[] { "--leader-retry-period", "10s" }, "--leader-retry-period (10s) must be shorter than --leader-renew-deadline (10s)")]
    [InlineData(new[] { "--ca-secret", "Mesh_CA" }, "--ca-secret 'Mesh_CA' is not a Kubernetes object name (lower-case DNS subdomain)")]
    [InlineData(new[] { "--ca-cert", "ca.crt", "--ca-key", "ca.key" }, "--ca-cert goes without --kubernetes: in Kubernetes the CA lives in a Secret (--ca-secret); put your CA there in the cert-manager shape (tls.crt, tls.key, ca.crt)")]
    public async Task Flags_that_cannot_work_exit_2_with_one_line(string[] args, string error)
    {
        var kubeconfig = Path.Combine(_dir, "kubeconfig");
        _api.WriteKubeconfig(kubeconfig);
        await using var process = ExecutableProcess.Start("controlplane", ExecutableProcess.ControlPlane,
            ["--kubernetes", "--data-dir", Path.Combine(_dir, "data"), "--port", "0", "--metrics-port", "0", .. args],
            new Dictionary<string, string> { ["KUBECONFIG"] = kubeconfig, ["HOME"] = _dir }, output);

        Assert.Equal(2, await process.Exited.WaitAsync(ExecutableProcess.Timeout));
        Assert.Equal([$"ztm-controlplane: {error}"], process.Lines);
        Assert.Empty(_api.Requests); // refused before anything reached the API
    }
}
