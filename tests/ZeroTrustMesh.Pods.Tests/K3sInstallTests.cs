using System.Diagnostics;
using k8s;
using k8s.Models;
using Testcontainers.K3s;
using Xunit.Abstractions;
using ZeroTrustMesh.Pods.Tests.Infrastructure;

namespace ZeroTrustMesh.Pods.Tests;

/// <summary>
/// The chart in a real cluster: k3s in a container (Testcontainers.K3s), the locally built images imported into its
/// containerd, <c>helm install</c>, then a labelled namespace whose pod the real API server sends to the webhook, and
/// which becomes ready only once its sidecar has attested with the pod's projected token (a real TokenReview) and holds
/// its policy. Runs wherever the k3s image can be had; here no registry is reachable, so it is skipped with that reason.
/// Then a second meshed pod calls the first through its Service (ClusterIP, captured by iptables): the control plane's
/// registry follows the Service, its EndpointSlice and the pods' service accounts, and the caller's sidecar reaches the
/// orders pod's sidecar with orders' identity checked, under an AuthorizationPolicy custom resource.
/// </summary>
public sealed class K3sInstallTests(ITestOutputHelper output)
{
    [K3sFact]
    public async Task The_chart_installs_into_k3s_and_a_labelled_namespaces_pod_is_injected_attests_and_becomes_ready()
    {
        DockerEngine.PrepareTestcontainers(output.WriteLine);
        await MeshImages.EnsureBuiltAsync(output.WriteLine);
        await using var k3s = new K3sBuilder(K3sImage.Name).Build();
        await k3s.StartAsync();

        // The cluster pulls nothing: the images go into its containerd from this engine.
        var archive = Path.Combine(Path.GetTempPath(), $"ztm-images-{Guid.NewGuid():N}.tar");
        try
        {
            await RunAsync("docker", "save", "-o", archive, MeshImages.Sidecar, MeshImages.ControlPlane, MeshImages.DemoApp, MeshImages.Tools);
            await k3s.CopyAsync(await File.ReadAllBytesAsync(archive), "/tmp/ztm-images.tar");
        }
        finally
        {
            File.Delete(archive);
        }
        var imported = await k3s.ExecAsync(["ctr", "images", "import", "/tmp/ztm-images.tar"]);
        Assert.True(imported.ExitCode == 0, imported.Stderr);

        var kubeconfig = Path.Combine(Path.GetTempPath(), $"ztm-k3s-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(kubeconfig, await k3s.GetKubeconfigAsync());
        try
        {
            await RunAsync("helm", "install", "ztm", Path.Combine(Repository.Root, "charts", "zero-trust-mesh"), "--kubeconfig", kubeconfig,
                "-n", "ztm-system", "--create-namespace", "--wait", "--timeout", "5m",
                "--set", "images.controlPlane.pullPolicy=Never", "--set", "images.sidecar.pullPolicy=Never");
            var client = new Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig));

            // The control plane keeps the webhook's caBundle current: until it has, the API server cannot call it.
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            while (true)
            {
                var webhook = await client.AdmissionregistrationV1.ReadMutatingWebhookConfigurationAsync("ztm-sidecar-injector", cancellationToken: timeout.Token);
                if (webhook.Webhooks.All(w => w.ClientConfig.CaBundle is { Length: > 0 }))
                {
                    break;
                }
                await Task.Delay(TimeSpan.FromSeconds(1), timeout.Token); // polling the API server: no event to wait on
            }

            await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "shop", Labels = new Dictionary<string, string> { ["ztm.dev/inject"] = "enabled" } } });
            foreach (var account in (string[])["orders", "frontend"])
            {
                await client.CoreV1.CreateNamespacedServiceAccountAsync(new V1ServiceAccount { Metadata = new V1ObjectMeta { Name = account } }, "shop");
            }
            var pod = await client.CoreV1.CreateNamespacedPodAsync(new V1Pod
            {
                Metadata = new V1ObjectMeta { Name = "orders", Labels = new Dictionary<string, string> { ["app"] = "orders" } },
                Spec = new V1PodSpec
                {
                    ServiceAccountName = "orders",
                    Containers =
                    [
                        new V1Container
                        {
                            Name = "app", Image = MeshImages.DemoApp, ImagePullPolicy = "Never",
                            Args = ["--name", "orders", "--listen", "127.0.0.1", "--http-port", "8080", "--grpc-port", "8081", "--tcp-port", "-1"],
                            Ports = [new V1ContainerPort { ContainerPort = 8080 }, new V1ContainerPort { ContainerPort = 8081 }],
                            ReadinessProbe = new V1Probe { HttpGet = new V1HTTPGetAction { Path = "/status/200", Port = 8080 } },
                        },
                    ],
                },
            }, "shop");
            Assert.Equal(["ztm-init", "ztm-sidecar"], pod.Spec.InitContainers.Select(c => c.Name));
            Assert.Equal("Always", pod.Spec.InitContainers[1].RestartPolicy);
            Assert.Contains("ztm.dev/status", pod.Metadata.Annotations.Keys);

            // Ready: the sidecar got its certificate through a TokenReview of the pod's token and its first policy (its
            // startup probe), and kubelet's rewritten readiness probe reached the app through the sidecar's health port.
            await WaitForReadyAsync(client, "orders", timeout.Token);

            // Issue 17: frontend calls orders through the Service. Its curl's connection to the ClusterIP is captured, its
            // sidecar resolves ClusterIP:80 through the control plane's registry (Service → EndpointSlice → orders' pod,
            // service account orders, injected) and sends to orders' sidecar on podIP:15006, which checks the policy.
            await client.CoreV1.CreateNamespacedServiceAsync(new V1Service
            {
                Metadata = new V1ObjectMeta { Name = "orders" },
                Spec = new V1ServiceSpec
                {
                    Selector = new Dictionary<string, string> { ["app"] = "orders" },
                    Ports = [new V1ServicePort { Name = "http", Port = 80, TargetPort = 8080 }],
                },
            }, "shop");
            await client.CustomObjects.CreateNamespacedCustomObjectAsync(new Dictionary<string, object>
            {
                ["apiVersion"] = "security.ztm.dev/v1",
                ["kind"] = "AuthorizationPolicy",
                ["metadata"] = new Dictionary<string, object> { ["name"] = "orders-from-frontend" },
                ["spec"] = new Dictionary<string, object>
                {
                    ["selector"] = new Dictionary<string, object> { ["service"] = "orders" },
                    ["action"] = "ALLOW",
                    ["rules"] = new object[] { new Dictionary<string, object> { ["from"] = new object[] { new Dictionary<string, object> { ["source"] = new Dictionary<string, object> { ["principals"] = new[] { Frontend } } } } } },
                },
            }, "security.ztm.dev", "v1", "shop", "authorizationpolicies");
            await client.CoreV1.CreateNamespacedPodAsync(new V1Pod
            {
                Metadata = new V1ObjectMeta { Name = "frontend", Labels = new Dictionary<string, string> { ["app"] = "frontend" } },
                Spec = new V1PodSpec
                {
                    ServiceAccountName = "frontend",
                    Containers =
                    [
                        new V1Container
                        {
                            Name = "app", Image = MeshImages.Tools, ImagePullPolicy = "Never", Command = ["sleep", "infinity"],
                            SecurityContext = new V1SecurityContext { RunAsUser = 1000, RunAsGroup = 1000 },
                        },
                    ],
                },
            }, "shop");
            await WaitForReadyAsync(client, "frontend", timeout.Token);

            // The policy and the EndpointSlice reach the sidecars within moments: the call is made until it succeeds.
            string last;
            while (true)
            {
                var call = await k3s.ExecAsync(["kubectl", "exec", "-n", "shop", "frontend", "-c", "app", "--",
                    "curl", "-sS", "-m", "5", "-w", "\n%{http_code}", "http://orders.shop.svc.cluster.local/hello"]);
                last = $"exit {call.ExitCode}: {call.Stdout} {call.Stderr}";
                if (call.ExitCode == 0 && call.Stdout.EndsWith("\n200", StringComparison.Ordinal))
                {
                    Assert.Contains($"\"caller\":\"{Frontend}\"", call.Stdout, StringComparison.Ordinal);
                    break;
                }
                Assert.False(timeout.IsCancellationRequested, $"frontend never reached orders through its Service; last: {last}");
                await Task.Delay(TimeSpan.FromSeconds(1), timeout.Token); // no event to wait on inside the cluster
            }
            output.WriteLine($"frontend → orders through the Service: {last}");
        }
        finally
        {
            File.Delete(kubeconfig);
        }
    }

    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";

    private static async Task WaitForReadyAsync(Kubernetes client, string name, CancellationToken timeout)
    {
        while (true)
        {
            var pod = await client.CoreV1.ReadNamespacedPodAsync(name, "shop", cancellationToken: timeout);
            if (pod.Status?.Conditions?.Any(c => c.Type == "Ready" && c.Status == "True") == true)
            {
                return;
            }
            await Task.Delay(TimeSpan.FromSeconds(1), timeout); // polling the API server: no event to wait on
        }
    }

    private async Task RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        output.WriteLine($"[{file} {string.Join(' ', args)}] exit {process.ExitCode}\n{await stdout}{await stderr}");
        Assert.True(process.ExitCode == 0, $"{file} exited with {process.ExitCode}: {await stderr}");
    }
}

/// <summary>The k3s image, if this engine has it or can pull it.</summary>
internal static class K3sImage
{
    public const string Name = "rancher/k3s:v1.32.5-k3s1";

    private static readonly Lazy<string?> Missing = new(Probe);

    public static string? SkipReason => Missing.Value;

    private static string? Probe()
    {
        if (Docker("image", "inspect", Name).ExitCode == 0)
        {
            return null;
        }
        var pull = Docker("pull", Name);
        return pull.ExitCode == 0 ? null
            : $"the k3s image {Name} cannot be pulled here ({pull.Error.Trim().Split('\n')[^1]}); the chart is held to the Kubernetes models by ZeroTrustMesh.Chart.Tests instead";
    }

    private static (int ExitCode, string Error) Docker(params string[] args)
    {
        var start = new ProcessStartInfo("docker") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        try
        {
            using var process = Process.Start(start)!;
            var error = process.StandardError.ReadToEndAsync();
            process.StandardOutput.ReadToEnd();
            if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
            {
                process.Kill(entireProcessTree: true);
                return (-1, "docker pull did not finish within 60 s");
            }
            return (process.ExitCode, error.GetAwaiter().GetResult());
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, $"docker CLI not found: {e.Message}");
        }
    }
}

/// <summary>A test against a real k3s cluster: skipped without a Docker engine or without the k3s image.</summary>
internal sealed class K3sFactAttribute : FactAttribute
{
    public K3sFactAttribute()
    {
        Skip = DockerEngine.SkipReason ?? K3sImage.SkipReason;
    }
}
