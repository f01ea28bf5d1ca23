using System.Text;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>
/// Keeps <c>webhooks[*].clientConfig.caBundle</c> of the injector's MutatingWebhookConfiguration equal to the mesh roots
/// (the webhook's serving certificate chains to them), through the Kubernetes API: at start and whenever the bundle
/// changes. A failed call is retried with exponential backoff (1 s .. 60 s) and logged, one line a try. Leader-only:
/// replicas would otherwise write the same object at once.
/// </summary>
internal sealed class CaBundlePublisher(
    IKubernetes client, string configurationName, TrustBundleFeed bundles, TimeProvider time, IReplicaLeadership leadership, ILogger<CaBundlePublisher> logger,
    TimeSpan? firstRetry = null)
    : LeaderOnlyService(leadership)
{
    public static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxRetry = TimeSpan.FromSeconds(60);

    protected override async Task RunAsync(CancellationToken leading)
    {
        var initialRetry = firstRetry ?? FirstRetry;
        var retry = initialRetry;
        while (!leading.IsCancellationRequested)
        {
            var bundle = bundles.Current;
            try
            {
                await PublishAsync(bundle, leading);
                retry = initialRetry;
                await bundles.WaitForChangeAsync(bundle, leading);
            }
            catch (OperationCanceledException) when (leading.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is HttpOperationException or HttpRequestException or InvalidOperationException or IOException or TaskCanceledException or System.Text.Json.JsonException)
            {
                InjectionLog.CaBundleFailed(logger, configurationName, retry.TotalSeconds, Describe(e));
                try
                {
                    await Task.Delay(retry, time, leading);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                retry = retry * 2 > MaxRetry ? MaxRetry : retry * 2;
            }
        }
    }

    /// <summary>Sets every webhook's caBundle to <paramref name="bundle"/>'s roots; writes nothing when all are already equal.</summary>
    private async Task PublishAsync(TrustBundle bundle, CancellationToken cancellation)
    {
        var pem = Encoding.UTF8.GetBytes(bundle.ToPem());
        var configuration = await client.AdmissionregistrationV1.ReadMutatingWebhookConfigurationAsync(configurationName, cancellationToken: cancellation);
        var webhooks = configuration.Webhooks ?? [];
        if (webhooks.Count == 0)
        {
            throw new InvalidOperationException($"MutatingWebhookConfiguration {configurationName} has no webhooks");
        }
        var patch = new JsonArray();
        for (var i = 0; i < webhooks.Count; i++)
        {
            if (webhooks[i].ClientConfig?.CaBundle is { } current && current.AsSpan().SequenceEqual(pem))
            {
                continue;
            }
            // The test pins the index to the webhook read above, so a concurrent edit that reorders them fails the patch (and it is retried).
            patch.Add(new JsonObject { ["op"] = "test", ["path"] = $"/webhooks/{i}/name", ["value"] = webhooks[i].Name });
            patch.Add(new JsonObject { ["op"] = "add", ["path"] = $"/webhooks/{i}/clientConfig/caBundle", ["value"] = Convert.ToBase64String(pem) });
        }
        if (patch.Count == 0)
        {
            InjectionLog.CaBundleCurrent(logger, configurationName);
            return;
        }
        await client.AdmissionregistrationV1.PatchMutatingWebhookConfigurationAsync(
            new V1Patch(patch.ToJsonString(), V1Patch.PatchType.JsonPatch), configurationName, cancellationToken: cancellation);
        InjectionLog.CaBundleUpdated(logger, configurationName, bundle.Roots.Count, webhooks.Count);
    }

    private static string Describe(Exception e) => e switch
    {
        HttpOperationException http => $"{(int)http.Response.StatusCode} {http.Response.ReasonPhrase}: {StatusMessage(http.Response.Content)}",
        _ => e.Message,
    };

    /// <summary>The message of a <c>metav1.Status</c> body, else the body's start.</summary>
    private static string StatusMessage(string? body)
    {
        if (string.IsNullOrEmpty(body))
        {
            return "(no body)";
        }
        try
        {
            if (JsonNode.Parse(body) is JsonObject status && status["message"] is JsonValue message && message.TryGetValue<string>(out var text))
            {
                return text;
            }
        }
        catch (System.Text.Json.JsonException)
        {
            // not JSON: fall through to the raw start
        }
        return body.Length > 200 ? body[..200] : body;
    }
}
