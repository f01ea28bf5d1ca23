using System.Text;
using k8s.Models;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Injection;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Injection;

/// <summary>
/// The caBundle publisher against the Kubernetes API double, through KubernetesClient and a kubeconfig as in a cluster:
/// the first write, a bundle change, no write when nothing changed, and API errors retried.
/// </summary>
public sealed class CaBundlePublisherTests : IAsyncLifetime
{
    private const string Name = "ztm-sidecar-injector";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly CertificateAuthority _ca = MeshCa.Create();
    private readonly CollectingLogs _logs = new();
    private KubernetesApiDouble _api = null!;
    private TrustBundleFeed _bundles = null!;

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        _bundles = new TrustBundleFeed(_ca);
    }

    public async Task DisposeAsync() => await _api.DisposeAsync();

    [Fact]
    public async Task Every_webhook_gets_the_mesh_roots_at_start_and_again_when_the_bundle_changes()
    {
        SeedConfiguration();
        await using var publisher = await StartAsync();

        await _api.WaitForAsync(_ => Bundles().All(b => b == _ca.Bundle.ToPem()), Timeout);

        var rotated = MeshCa.Create();
        var next = new TrustBundle(SpiffeId.DefaultTrustDomain, [.. _ca.Bundle.Roots, .. rotated.Bundle.Roots], 2);
        _bundles.Publish(next);

        await _api.WaitForAsync(_ => Bundles().All(b => b == next.ToPem()), Timeout);
        await _logs.WaitForAsync(l => l.Contains($"caBundle of MutatingWebhookConfiguration {Name} set to the mesh roots (2 root(s), 2 webhook(s))", StringComparison.Ordinal), 1, Timeout);
        Assert.Equal(2, _api.Requests.Count(r => r.Method == "PATCH" && r.Status == 200));
        Assert.All(_api.Requests.Where(r => r.Method == "PATCH"), r => Assert.Equal("application/json-patch+json", r.ContentType?.Split(';')[0]));
        Assert.Equal(2, _logs.Lines.Count(l => l.Contains($"caBundle of MutatingWebhookConfiguration {Name} set to the mesh roots", StringComparison.Ordinal)));
        // The rest of the object is the chart's: untouched.
        var stored = _api.Get<V1MutatingWebhookConfiguration>("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", null, Name)!;
        Assert.Equal("/inject", stored.Webhooks[0].ClientConfig.Service.Path);
        Assert.Equal("Fail", stored.Webhooks[1].FailurePolicy);
    }

    [Fact]
    public async Task A_current_bundle_is_not_written_again()
    {
        SeedConfiguration(caBundle: Encoding.UTF8.GetBytes(_ca.Bundle.ToPem()));

        await using var publisher = await StartAsync();
        await _logs.WaitForAsync(l => l.Contains("already holds the mesh roots", StringComparison.Ordinal), 1, Timeout);
        _bundles.Publish(new TrustBundle(SpiffeId.DefaultTrustDomain, _ca.Bundle.Roots, 7)); // the same roots: no change

        await publisher.StopAsync();
        Assert.DoesNotContain(_api.Requests, r => r.Method == "PATCH");
        Assert.Single(_logs.Lines, l => l.Contains("caBundle", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Api_errors_and_a_missing_configuration_are_retried_with_one_line_each()
    {
        // The configuration does not exist yet (the chart applies it after the control plane starts), then the API
        // server fails twice, then a concurrent writer wins once.
        _api.Fail(r => r.Method == "GET", 2, 503, "ServiceUnavailable");
        _api.Fail(r => r.Method == "PATCH", 1, 409, "Conflict");
        await using var publisher = await StartAsync();
        await _api.WaitForAsync(api => api.Requests.Count(r => r.Method == "GET") >= 3, Timeout); // 503, 503, 404

        SeedConfiguration();

        await _api.WaitForAsync(_ => Bundles().All(b => b == _ca.Bundle.ToPem()), Timeout);
        await _logs.WaitForAsync(l => l.Contains("set to the mesh roots", StringComparison.Ordinal), 1, Timeout);
        var failures = _logs.Lines.Where(l => l.Contains($"caBundle of MutatingWebhookConfiguration {Name} not updated", StringComparison.Ordinal)).ToList();
        Assert.Contains(failures, l => l.Contains("503", StringComparison.Ordinal));
        Assert.Contains(failures, l => l.Contains("404", StringComparison.Ordinal) && l.Contains("not found", StringComparison.Ordinal));
        Assert.Contains(failures, l => l.Contains("409", StringComparison.Ordinal));
        Assert.Equal(2, _api.Requests.Count(r => r.Method == "PATCH")); // the refused one and the one that took
    }

    [Fact]
    public async Task Nothing_is_written_while_another_replica_leads()
    {
        SeedConfiguration();
        var leadership = new GatedLeadership();
        await using var publisher = await StartAsync(leadership);

        await publisher.StopAsync();

        Assert.Empty(_api.Requests);
    }

    private IEnumerable<string?> Bundles()
    {
        var stored = _api.Get<V1MutatingWebhookConfiguration>("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", null, Name);
        return stored is null ? [null] : stored.Webhooks.Select(w => w.ClientConfig.CaBundle is { } b ? Encoding.UTF8.GetString(b) : null);
    }

    private void SeedConfiguration(byte[]? caBundle = null)
    {
        V1MutatingWebhook Webhook(string name) => new()
        {
            Name = name,
            AdmissionReviewVersions = ["v1"],
            SideEffects = "None",
            FailurePolicy = "Fail",
            ClientConfig = new Admissionregistrationv1WebhookClientConfig
            {
                Service = new Admissionregistrationv1ServiceReference { Name = "ztm-controlplane", NamespaceProperty = "ztm-system", Path = "/inject", Port = 15017 },
                CaBundle = caBundle,
            },
            Rules = [new V1RuleWithOperations { ApiGroups = [""], ApiVersions = ["v1"], Operations = ["CREATE"], Resources = ["pods"] }],
        };
        _api.Seed(new V1MutatingWebhookConfiguration
        {
            ApiVersion = "admissionregistration.k8s.io/v1",
            Kind = "MutatingWebhookConfiguration",
            Metadata = new V1ObjectMeta { Name = Name },
            Webhooks = [Webhook("namespace.sidecar-injector.ztm.dev"), Webhook("object.sidecar-injector.ztm.dev")],
        });
    }

    private async Task<Running> StartAsync(IReplicaLeadership? leadership = null)
    {
        var factory = LoggerFactory.Create(l => l.AddProvider(_logs).SetMinimumLevel(LogLevel.Debug));
        var service = new CaBundlePublisher(
            _api.CreateClient(), Name, _bundles, TimeProvider.System, leadership ?? new StandaloneLeadership(), factory.CreateLogger<CaBundlePublisher>(),
            firstRetry: TimeSpan.FromMilliseconds(20));
        await service.StartAsync(CancellationToken.None);
        return new Running(service, factory);
    }

    private sealed class Running(CaBundlePublisher service, ILoggerFactory factory) : IAsyncDisposable
    {
        private bool _stopped;

        public CaBundlePublisher Service { get; } = service;

        public async Task StopAsync()
        {
            if (!_stopped)
            {
                _stopped = true;
                await Service.StopAsync(CancellationToken.None);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await StopAsync();
            Service.Dispose();
            factory.Dispose();
        }
    }

    /// <summary>A replica that never leads: the work is never started.</summary>
    private sealed class GatedLeadership : IReplicaLeadership
    {
        public async Task RunWhileLeadingAsync(Func<CancellationToken, Task> work, CancellationToken stopping)
        {
            try
            {
                await Task.Delay(System.Threading.Timeout.Infinite, stopping);
            }
            catch (OperationCanceledException)
            {
                // stopping
            }
        }
    }
}
