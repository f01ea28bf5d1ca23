using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using k8s.Models;
using Xunit.Abstractions;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Injection;

/// <summary>
/// <c>ztm-controlplane</c> as a process with the chart's webhook flags and <c>$KUBECONFIG</c> pointing at the Kubernetes
/// API double: it patches the webhook configuration's caBundle, publishes ztm-ca-root, and injects over HTTPS.
/// </summary>
public sealed partial class ControlPlaneProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-cp-k8s-").FullName;
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

        await using var process = ExecutableProcess.Start("controlplane", ExecutableProcess.ControlPlane,
            ["--listen", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--data-dir", Path.Combine(_dir, "data"), "--operator-config", Path.Combine(_dir, "config"),
             "--webhook-port", "0", "--injection-config", config, "--namespace", "ztm-system", "--webhook-configuration", "ztm-sidecar-injector"],
            WithKubeconfig(kubeconfig), output);
        var line = await process.WaitForLineAsync(l => l.Contains("injection webhook on https://127.0.0.1:", StringComparison.Ordinal), "the webhook's address");
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

    [Fact]
    public async Task Without_a_way_to_the_api_the_webhook_configuration_flag_exits_2_with_one_line()
    {
        await using var process = ExecutableProcess.Start("controlplane", ExecutableProcess.ControlPlane,
            ["--data-dir", Path.Combine(_dir, "data"), "--webhook-configuration", "ztm-sidecar-injector"], WithKubeconfig(Path.Combine(_dir, "missing")), output);

        Assert.Equal(2, await process.Exited.WaitAsync(Timeout));
        Assert.Equal([$"ztm-controlplane: --webhook-configuration needs the Kubernetes API: $KUBECONFIG names {Path.Combine(_dir, "missing")}, which does not exist"], process.Lines);
    }

    [GeneratedRegex(@"https://127\.0\.0\.1:(\d+)/inject")]
    private static partial Regex WebhookPort();

    private Dictionary<string, string> WithKubeconfig(string kubeconfig) => new() { ["KUBECONFIG"] = kubeconfig, ["HOME"] = _dir };
}
