using System.Diagnostics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using k8s.Models;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Injection;

/// <summary>
/// <c>ztm-controlplane</c> as a process with the chart's webhook flags and <c>$KUBECONFIG</c> pointing at the Kubernetes
/// API double: it patches the webhook configuration's caBundle, publishes ztm-ca-root, and injects over HTTPS.
/// </summary>
public sealed partial class ControlPlaneProcessTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-cp-k8s-").FullName;
    private KubernetesApiDouble _api = null!;

    public async Task InitializeAsync() => _api = await KubernetesApiDouble.StartAsync();

    public async Task DisposeAsync()
    {
        await _api.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task The_control_plane_keeps_the_webhook_configuration_and_root_configmaps_current_and_injects()
    {
        _api.Seed(new V1Namespace { ApiVersion = "v1", Kind = "Namespace", Metadata = new V1ObjectMeta { Name = "shop", Labels = new Dictionary<string, string> { ["ztm.dev/inject"] = "enabled" } } });
        _api.Seed(new V1MutatingWebhookConfiguration
        {
            ApiVersion = "admissionregistration.k8s.io/v1",
            Kind = "MutatingWebhookConfiguration",
            Metadata = new V1ObjectMeta { Name = "ztm-sidecar-injector" },
            Webhooks =
            [
                new V1MutatingWebhook
                {
                    Name = "namespace.sidecar-injector.ztm.dev",
                    AdmissionReviewVersions = ["v1"],
                    SideEffects = "None",
                    ClientConfig = new Admissionregistrationv1WebhookClientConfig
                    {
                        Service = new Admissionregistrationv1ServiceReference { Name = "ztm-controlplane", NamespaceProperty = "ztm-system", Path = "/inject", Port = 15017 },
                    },
                },
            ],
        });
        var kubeconfig = Path.Combine(_dir, "kubeconfig");
        _api.WriteKubeconfig(kubeconfig);
        var config = Path.Combine(_dir, "injection.json");
        await File.WriteAllTextAsync(config, InjectionFixtures.ConfigJson);

        using var process = Start(
            ["--listen", "127.0.0.1", "--port", "0", "--data-dir", Path.Combine(_dir, "data"), "--operator-config", Path.Combine(_dir, "config"),
             "--webhook-port", "0", "--injection-config", config, "--namespace", "ztm-system", "--webhook-configuration", "ztm-sidecar-injector"],
            kubeconfig, out var lines, out var exited);
        try
        {
            var line = await WaitForLineAsync(lines, exited, "injection webhook on https://127.0.0.1:");
            var port = int.Parse(WebhookPort().Match(line).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            var bundle = await File.ReadAllTextAsync(Path.Combine(_dir, "data", "bundle.pem"));

            await _api.WaitForAsync(api =>
                api.Get<V1MutatingWebhookConfiguration>("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", null, "ztm-sidecar-injector")!
                    .Webhooks[0].ClientConfig.CaBundle is { } caBundle && Encoding.UTF8.GetString(caBundle) == bundle
                && api.Get<V1ConfigMap>("v1", "configmaps", "shop", "ztm-ca-root")?.Data["root-cert.pem"] == bundle, Timeout);

            // What the API server does: trust the caBundle, call the Service name.
            var roots = new X509Certificate2Collection();
            roots.ImportFromPem(bundle);
            using var client = InjectionFixtures.ApiServerClient("ztm-controlplane.ztm-system.svc", () => port, roots[0]);
            var review = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(InjectionFixtures.TestData, "deployment.json")))!["review"]!.ToJsonString();
            using var response = await client.PostAsync("/inject", new StringContent(review, Encoding.UTF8, "application/json"));

            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("JSONPatch", JsonNode.Parse(await response.Content.ReadAsStringAsync())!["response"]!["patchType"]!.GetValue<string>());
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task Without_a_way_to_the_api_the_webhook_configuration_flag_exits_2_with_one_line()
    {
        using var process = Start(
            ["--data-dir", Path.Combine(_dir, "data"), "--webhook-configuration", "ztm-sidecar-injector"], kubeconfig: Path.Combine(_dir, "missing"), out _, out var exited);

        Assert.Equal(2, await exited.Task.WaitAsync(Timeout));
        var stderr = await process.StandardError.ReadToEndAsync();
        Assert.Equal($"ztm-controlplane: --webhook-configuration needs the Kubernetes API: $KUBECONFIG names {Path.Combine(_dir, "missing")}, which does not exist", stderr.Trim());
    }

    [GeneratedRegex(@"https://127\.0\.0\.1:(\d+)/inject")]
    private static partial Regex WebhookPort();

    private Process Start(string[] args, string kubeconfig, out List<string> lines, out TaskCompletionSource<int> exited)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            Environment = { ["KUBECONFIG"] = kubeconfig, ["HOME"] = _dir, ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1" },
        };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ztm-controlplane.dll"));
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var collected = new List<string>();
        var done = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (collected)
                {
                    collected.Add(e.Data);
                    Monitor.PulseAll(collected);
                }
            }
        };
        process.Exited += (_, _) => done.TrySetResult(process.ExitCode);
        process.Start();
        process.BeginOutputReadLine();
        lines = collected;
        exited = done;
        return process;
    }

    private static Task<string> WaitForLineAsync(List<string> lines, TaskCompletionSource<int> exited, string text) => Task.Run(() =>
    {
        var deadline = DateTime.UtcNow + Timeout;
        lock (lines)
        {
            while (true)
            {
                if (lines.FirstOrDefault(l => l.Contains(text, StringComparison.Ordinal)) is { } line)
                {
                    return line;
                }
                if (exited.Task.IsCompleted || DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"no line with '{text}' (exited: {exited.Task.IsCompleted}); output:\n{string.Join("\n", lines)}");
                }
                Monitor.Wait(lines, TimeSpan.FromMilliseconds(200));
            }
        }
    });
}
