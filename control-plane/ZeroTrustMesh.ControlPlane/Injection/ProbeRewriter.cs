using System.Text.Json.Nodes;
using k8s.Models;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>
/// Kubelet probes under STRICT mTLS: kubelet calls the pod IP without a mesh certificate, so an app container's HTTP,
/// TCP and gRPC probes become HTTP probes on the sidecar's health port (<c>/app-health/{container}/{livez|readyz|startupz}</c>),
/// and the originals (named ports resolved to numbers) go to the sidecar in <c>ZTM_APP_PROBES</c>, which it runs
/// against the app on 127.0.0.1. Exec probes run inside the container and stay as they are.
/// </summary>
internal static class ProbeRewriter
{
    /// <summary>One probe replaced: where it is in the pod, the probe kubelet runs now, and what the sidecar runs for it.</summary>
    public sealed record Rewrite(int ContainerIndex, string Field, V1Probe Replacement, string HealthPath, JsonObject Original);

    private static readonly (string Field, string Suffix, Func<V1Container, V1Probe?> Get)[] Kinds =
    [
        ("livenessProbe", "livez", c => c.LivenessProbe),
        ("readinessProbe", "readyz", c => c.ReadinessProbe),
        ("startupProbe", "startupz", c => c.StartupProbe),
    ];

    private static readonly System.Text.Json.JsonSerializerOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Every probe of the pod's app containers that goes through the sidecar, in container order, then liveness, readiness, startup.</summary>
    public static IReadOnlyList<Rewrite> Plan(V1Pod pod, int healthPort)
    {
        var rewrites = new List<Rewrite>();
        var containers = pod.Spec?.Containers ?? [];
        for (var i = 0; i < containers.Count; i++)
        {
            var container = containers[i];
            foreach (var (field, suffix, get) in Kinds)
            {
                if (get(container) is not { } probe || Original(container, probe) is not { } original)
                {
                    continue;
                }
                var path = $"/app-health/{container.Name}/{suffix}";
                var replacement = new V1Probe
                {
                    HttpGet = new V1HTTPGetAction { Path = path, Port = healthPort },
                    InitialDelaySeconds = probe.InitialDelaySeconds,
                    PeriodSeconds = probe.PeriodSeconds,
                    TimeoutSeconds = probe.TimeoutSeconds,
                    SuccessThreshold = probe.SuccessThreshold,
                    FailureThreshold = probe.FailureThreshold,
                    TerminationGracePeriodSeconds = probe.TerminationGracePeriodSeconds,
                };
                rewrites.Add(new Rewrite(i, field, replacement, path, original));
            }
        }
        return rewrites;
    }

    /// <summary>The <c>ZTM_APP_PROBES</c> value: health path → original probe (Istio's <c>ISTIO_KUBE_APP_PROBERS</c> shape).</summary>
    public static string ToEnvironment(IReadOnlyList<Rewrite> rewrites)
    {
        var probes = new JsonObject();
        foreach (var rewrite in rewrites)
        {
            probes[rewrite.HealthPath] = rewrite.Original;
        }
        return probes.ToJsonString(Relaxed); // JSON in an env var: '&' of a query string stays readable
    }

    /// <summary>What the sidecar runs instead of kubelet; null for a probe that is not rewritten (exec, or a port that names nothing).</summary>
    private static JsonObject? Original(V1Container container, V1Probe probe)
    {
        JsonObject action;
        if (probe.HttpGet is { } http)
        {
            if (ResolvePort(container, http.Port) is not { } port)
            {
                return null;
            }
            var get = new JsonObject
            {
                ["path"] = string.IsNullOrEmpty(http.Path) ? "/" : http.Path,
                ["port"] = port,
                ["scheme"] = string.IsNullOrEmpty(http.Scheme) ? "HTTP" : http.Scheme,
            };
            if (http.HttpHeaders is { Count: > 0 } headers)
            {
                get["httpHeaders"] = new JsonArray([.. headers.Select(h => (JsonNode)new JsonObject { ["name"] = h.Name, ["value"] = h.Value })]);
            }
            action = new JsonObject { ["httpGet"] = get };
        }
        else if (probe.TcpSocket is { } tcp)
        {
            if (ResolvePort(container, tcp.Port) is not { } port)
            {
                return null;
            }
            action = new JsonObject { ["tcpSocket"] = new JsonObject { ["port"] = port } };
        }
        else if (probe.Grpc is { } grpc)
        {
            action = new JsonObject { ["grpc"] = new JsonObject { ["port"] = grpc.Port, ["service"] = grpc.Service ?? "" } };
        }
        else
        {
            return null;
        }
        action["timeoutSeconds"] = probe.TimeoutSeconds ?? 1;
        return action;
    }

    /// <summary>A probe's port as a number: given as one, or the container port of that name.</summary>
    private static int? ResolvePort(V1Container container, IntOrString? port)
    {
        var text = port?.Value;
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }
        if (int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number))
        {
            return number;
        }
        return container.Ports?.FirstOrDefault(p => p.Name == text)?.ContainerPort;
    }
}
