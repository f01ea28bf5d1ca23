using k8s;
using k8s.Autorest;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Coordination;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>
/// Publishes the mesh roots as ConfigMap <c>ztm-ca-root</c> (key <c>root-cert.pem</c>) in every namespace labelled
/// <c>ztm.dev/inject=enabled</c>: injected sidecars mount it to verify the control plane. At start, when the bundle
/// changes, and every <see cref="Resync"/> (namespaces labelled later; there is no watch). Leader-only; a failed pass is
/// logged and retried at the next one. Namespaces whose pods opt in by pod label alone need the ConfigMap too: label
/// the namespace, or create it there.
/// </summary>
internal sealed class RootConfigMapPublisher(
    IKubernetes client, TrustBundleFeed bundles, TimeProvider time, IReplicaLeadership leadership, ILogger<RootConfigMapPublisher> logger, TimeSpan? resync = null)
    : LeaderOnlyService(leadership)
{
    public const string Name = "ztm-ca-root";
    public const string Key = "root-cert.pem";
    public const string ManagedByLabel = "app.kubernetes.io/managed-by";
    public static readonly TimeSpan Resync = TimeSpan.FromSeconds(30);

    private int _lastCount = -1;

    protected override async Task RunAsync(CancellationToken leading)
    {
        var every = resync ?? Resync;
        while (!leading.IsCancellationRequested)
        {
            var bundle = bundles.Current;
            try
            {
                await PublishAsync(bundle.ToPem(), leading);
            }
            catch (OperationCanceledException) when (leading.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is HttpOperationException or HttpRequestException or IOException or TaskCanceledException or System.Text.Json.JsonException)
            {
                InjectionLog.RootConfigMapsFailed(logger, Name, every.TotalSeconds, e is HttpOperationException http ? $"{(int)http.Response.StatusCode} {http.Response.Content}" : e.Message);
            }
            try
            {
                await Task.WhenAny(bundles.WaitForChangeAsync(bundle, leading), Task.Delay(every, time, leading));
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task PublishAsync(string pem, CancellationToken cancellation)
    {
        var namespaces = await client.CoreV1.ListNamespaceAsync(labelSelector: $"{InjectionAnnotations.Inject}={InjectionAnnotations.NamespaceEnabled}", cancellationToken: cancellation);
        foreach (var ns in namespaces.Items)
        {
            var name = ns.Metadata.Name;
            V1ConfigMap? existing;
            try
            {
                existing = await client.CoreV1.ReadNamespacedConfigMapAsync(Name, name, cancellationToken: cancellation);
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.NotFound)
            {
                existing = null;
            }
            if (existing is null)
            {
                await client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap
                {
                    Metadata = new V1ObjectMeta { Name = Name, Labels = new Dictionary<string, string> { [ManagedByLabel] = "ztm-controlplane" } },
                    Data = new Dictionary<string, string> { [Key] = pem },
                }, name, cancellationToken: cancellation);
            }
            else if (existing.Data is null || !existing.Data.TryGetValue(Key, out var current) || current != pem)
            {
                existing.Data ??= new Dictionary<string, string>();
                existing.Data[Key] = pem;
                await client.CoreV1.ReplaceNamespacedConfigMapAsync(existing, Name, name, cancellationToken: cancellation); // resourceVersion kept: a concurrent edit is a 409, retried next pass
            }
        }
        if (namespaces.Items.Count != _lastCount)
        {
            _lastCount = namespaces.Items.Count;
            InjectionLog.RootConfigMapsPublished(logger, Name, namespaces.Items.Count);
        }
    }
}
