using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Injection;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Injection;

/// <summary>ConfigMap ztm-ca-root in every namespace labelled ztm.dev/inject=enabled, against the Kubernetes API double.</summary>
public sealed class RootConfigMapPublisherTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly CertificateAuthority _ca = MeshCa.Create();
    private readonly CollectingLogs _logs = new();
    private KubernetesApiDouble _api = null!;

    public async Task InitializeAsync() => _api = await KubernetesApiDouble.StartAsync();

    public async Task DisposeAsync() => await _api.DisposeAsync();

    [Fact]
    public async Task Labelled_namespaces_get_the_roots_created_or_corrected_and_followed_through_changes()
    {
        Namespace("shop", labelled: true);
        Namespace("legacy", labelled: true);
        Namespace("other", labelled: false);
        _api.Seed(new V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            Metadata = new V1ObjectMeta { Name = "ztm-ca-root", NamespaceProperty = "legacy" },
            Data = new Dictionary<string, string> { ["root-cert.pem"] = "stale", ["note"] = "kept" },
        });
        _api.Fail(r => r.Method == "GET" && r.Path == "/api/v1/namespaces", 1, 500); // the first pass fails
        var bundles = new TrustBundleFeed(_ca);
        using var factory = LoggerFactory.Create(l => l.AddProvider(_logs));
        using var publisher = new RootConfigMapPublisher(
            _api.CreateClient(), bundles, TimeProvider.System, new StandaloneLeadership(), factory.CreateLogger<RootConfigMapPublisher>(), TimeSpan.FromMilliseconds(50));
        await publisher.StartAsync(CancellationToken.None);

        await _api.WaitForAsync(_ => Root("shop") == _ca.Bundle.ToPem() && Root("legacy") == _ca.Bundle.ToPem(), Timeout);
        Assert.Null(Root("other"));
        Assert.Equal("kept", _api.Get<V1ConfigMap>("v1", "configmaps", "legacy", "ztm-ca-root")!.Data["note"]);
        Assert.Contains(_logs.Lines, l => l.Contains("trust bundle ConfigMap ztm-ca-root not published", StringComparison.Ordinal) && l.Contains("500", StringComparison.Ordinal));

        using var client = _api.CreateClient();
        await client.CoreV1.PatchNamespaceAsync(new V1Patch("""{"metadata":{"labels":{"ztm.dev/inject":"enabled"}}}""", V1Patch.PatchType.MergePatch), "other");
        await _api.WaitForAsync(_ => Root("other") == _ca.Bundle.ToPem(), Timeout);

        var next = new TrustBundle(SpiffeId.DefaultTrustDomain, [.. _ca.Bundle.Roots, .. MeshCa.Create().Bundle.Roots], 2);
        bundles.Publish(next);
        await _api.WaitForAsync(_ => new[] { "shop", "legacy", "other" }.All(ns => Root(ns) == next.ToPem()), Timeout);

        await publisher.StopAsync(CancellationToken.None);
    }

    private string? Root(string ns) =>
        _api.Get<V1ConfigMap>("v1", "configmaps", ns, "ztm-ca-root") is { } map && map.Data.TryGetValue("root-cert.pem", out var pem) ? pem : null;

    private void Namespace(string name, bool labelled) => _api.Seed(new V1Namespace
    {
        ApiVersion = "v1",
        Kind = "Namespace",
        Metadata = new V1ObjectMeta { Name = name, Labels = labelled ? new Dictionary<string, string> { ["ztm.dev/inject"] = "enabled" } : null },
    });
}
