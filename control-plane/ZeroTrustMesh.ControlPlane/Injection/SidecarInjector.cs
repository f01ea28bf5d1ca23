using System.Globalization;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;

namespace ZeroTrustMesh.ControlPlane.Injection;

internal enum InjectionDecision { Injected, Skipped, Refused }

/// <summary>What the injector decided for one pod: a JSONPatch (RFC 6902) when injected, else why not.</summary>
internal sealed record InjectionResult(InjectionDecision Decision, string Reason, JsonArray? Patch = null)
{
    public static InjectionResult Skip(string reason) => new(InjectionDecision.Skipped, reason);

    public static InjectionResult Refuse(string message) => new(InjectionDecision.Refused, message);
}

/// <summary>
/// Decides whether a pod gets the mesh and builds the JSONPatch that adds it. Pure: a pod, its namespace and the
/// injection config in, a result out; the webhook around it does HTTP and AdmissionReview.
/// <list type="number">
/// <item>Skipped: the control plane's own namespace, an already injected pod (<c>ztm.dev/status</c>), hostNetwork, <c>ztm.dev/inject: "false"</c> (label or annotation).</item>
/// <item>Refused: an invalid <c>ztm.dev/inject</c>, exclusion or resource annotation (every problem named), or a name the mesh reserves already in use.</item>
/// <item>Injected: the capture init container, the native sidecar, the token and trust-bundle volumes (and the decision
/// log's, when the config turns it on), the status and
/// scrape annotations, and app probes moved to the sidecar's health port.</item>
/// </list>
/// Selection itself (namespace label <c>ztm.dev/inject=enabled</c>, pod label <c>ztm.dev/inject=true</c>) is the webhook
/// configuration's: every pod the API server sends here is injected unless one of the above applies.
/// </summary>
internal sealed class SidecarInjector(InjectionConfig config, string? ownNamespace)
{
    public const string InitName = "ztm-init";
    public const string SidecarName = "ztm-sidecar";
    public const string TokenVolume = "ztm-token";
    public const string TrustBundleVolume = "ztm-ca-root";
    public const string TrustBundleConfigMap = "ztm-ca-root";
    public const string TokenDirectory = "/var/run/secrets/ztm/tokens";
    public const string TrustBundleDirectory = "/var/run/ztm/ca";
    public const string DecisionLogVolume = "ztm-decision-log";
    public const string DecisionLogDirectory = "/var/lib/ztm/decision-log";
    public const int InboundPort = 15006;
    public const int OutboundPort = 15001;
    public const int AdminPort = 15020;
    public const int HealthPort = 15021;
    public const long TokenExpirationSeconds = 3600;

    /// <summary>
    /// What makes <paramref name="pod"/> something no API server sends (null list entries, nameless containers, no
    /// containers), or null: the webhook answers such a review 400 before deciding anything.
    /// </summary>
    public static string? ShapeProblem(V1Pod pod)
    {
        if (pod.Spec?.Containers is not { Count: > 0 } containers)
        {
            return "the pod has no containers";
        }
        var all = containers.Concat(pod.Spec.InitContainers ?? []).ToList();
        if (all.Any(c => c is null || c.Name is null))
        {
            return "a container of the pod is null or has no name";
        }
        if (pod.Spec.Volumes?.Any(v => v is null || v.Name is null) == true)
        {
            return "a volume of the pod is null or has no name";
        }
        foreach (var container in all)
        {
            if (container.Ports?.Any(p => p is null) == true)
            {
                return $"container {container.Name} has a null port";
            }
            foreach (var probe in new[] { container.LivenessProbe, container.ReadinessProbe, container.StartupProbe })
            {
                if (probe?.HttpGet?.HttpHeaders?.Any(h => h is null) == true)
                {
                    return $"a probe of container {container.Name} has a null header";
                }
            }
        }
        if ((pod.Metadata?.Annotations?.Values ?? []).Concat(pod.Metadata?.Labels?.Values ?? []).Any(v => v is null))
        {
            return "a label or annotation of the pod has a null value";
        }
        return null;
    }

    /// <summary>Decides for <paramref name="pod"/>, created in <paramref name="podNamespace"/> (the request's namespace: a new pod's own may be empty).</summary>
    public InjectionResult Inject(V1Pod pod, string podNamespace)
    {
        var annotations = pod.Metadata?.Annotations ?? new Dictionary<string, string>();
        var labels = pod.Metadata?.Labels ?? new Dictionary<string, string>();
        if (podNamespace == ownNamespace)
        {
            return InjectionResult.Skip($"namespace {podNamespace} is the control plane's own");
        }
        if (annotations.ContainsKey(InjectionAnnotations.Status))
        {
            return InjectionResult.Skip($"already injected ({InjectionAnnotations.Status} is set)");
        }
        if (pod.Spec?.HostNetwork == true)
        {
            return InjectionResult.Skip("hostNetwork pod");
        }
        if (annotations.TryGetValue(InjectionAnnotations.Inject, out var annotated) && annotated is not ("true" or "false"))
        {
            return InjectionResult.Refuse($"annotation {InjectionAnnotations.Inject}: '{annotated}' is invalid: use \"true\" or \"false\"");
        }
        if (annotated == "false" || (labels.TryGetValue(InjectionAnnotations.Inject, out var labelled) && labelled == "false"))
        {
            return InjectionResult.Skip($"opted out ({InjectionAnnotations.Inject}: \"false\")");
        }
        if (pod.Spec is null)
        {
            return InjectionResult.Refuse("the pod has no spec");
        }

        var errors = new List<string>();
        var settings = ReadAnnotations(annotations, errors);
        CheckReservedNames(pod.Spec, errors);
        if (errors.Count > 0)
        {
            return InjectionResult.Refuse(string.Join("; ", errors));
        }
        return new InjectionResult(InjectionDecision.Injected, "injected", BuildPatch(pod, settings!));
    }

    /// <summary>The pod's settings from its annotations over the config's; null (and <paramref name="errors"/>) when any is invalid.</summary>
    private PodSettings? ReadAnnotations(IDictionary<string, string> annotations, List<string> errors)
    {
        IReadOnlyList<int> Ports(string name)
        {
            if (!annotations.TryGetValue(name, out var value))
            {
                return [];
            }
            var ports = InjectionAnnotations.ParsePorts(name, value, out var error);
            if (error is not null)
            {
                errors.Add(error);
            }
            return ports ?? [];
        }

        var inbound = Ports(InjectionAnnotations.ExcludeInboundPorts);
        var outbound = Ports(InjectionAnnotations.ExcludeOutboundPorts);
        IReadOnlyList<string> cidrs = [];
        if (annotations.TryGetValue(InjectionAnnotations.ExcludeOutboundIPRanges, out var rangesValue))
        {
            cidrs = InjectionAnnotations.ParseCidrs(InjectionAnnotations.ExcludeOutboundIPRanges, rangesValue, out var error) ?? [];
            if (error is not null)
            {
                errors.Add(error);
            }
        }

        var requests = new Dictionary<string, string>(config.Resources.Requests);
        var limits = new Dictionary<string, string>(config.Resources.Limits);
        var sources = new Dictionary<string, string>(); // "requests.cpu" → the annotation that set it, for messages
        foreach (var (name, target, key) in new[]
        {
            (InjectionAnnotations.ProxyCpu, requests, "cpu"),
            (InjectionAnnotations.ProxyMemory, requests, "memory"),
            (InjectionAnnotations.ProxyCpuLimit, limits, "cpu"),
            (InjectionAnnotations.ProxyMemoryLimit, limits, "memory"),
        })
        {
            if (!annotations.TryGetValue(name, out var value))
            {
                continue;
            }
            if (!Quantities.TryParse(value, out _))
            {
                errors.Add($"annotation {name}: '{value}' is invalid: not a Kubernetes quantity (e.g. 100m, 0.5, 128Mi, 1Gi)");
                continue;
            }
            target[key] = value;
            sources[(target == requests ? "requests." : "limits.") + key] = name;
        }
        foreach (var key in new[] { "cpu", "memory" })
        {
            if (requests.TryGetValue(key, out var request) && limits.TryGetValue(key, out var limit)
                && Quantities.TryParse(request, out var r) && Quantities.TryParse(limit, out var l) && r > l)
            {
                var requestFrom = sources.GetValueOrDefault("requests." + key, "the injection config");
                var limitFrom = sources.GetValueOrDefault("limits." + key, "the injection config");
                errors.Add($"the sidecar's {key} request '{request}' (from {requestFrom}) is above its limit '{limit}' (from {limitFrom})");
            }
        }
        if (errors.Count > 0)
        {
            return null;
        }

        return new PodSettings(
            Distinct([HealthPort, AdminPort, .. config.ExcludeInboundPorts, .. inbound]),
            Distinct([.. config.ExcludeOutboundPorts, .. outbound]),
            [.. config.ExcludeOutboundIPRanges.Concat(cidrs).Distinct(StringComparer.Ordinal)],
            requests,
            limits);
    }

    private static List<int> Distinct(IEnumerable<int> ports) => [.. ports.Distinct()];

    private static void CheckReservedNames(V1PodSpec spec, List<string> errors)
    {
        foreach (var name in (spec.Containers ?? []).Concat(spec.InitContainers ?? []).Select(c => c.Name))
        {
            if (name is InitName or SidecarName)
            {
                errors.Add($"container name {name} is reserved for the mesh's sidecar; rename the container or opt the pod out with {InjectionAnnotations.Inject}: \"false\"");
            }
        }
        foreach (var name in (spec.Volumes ?? []).Select(v => v.Name))
        {
            if (name is TokenVolume or TrustBundleVolume or DecisionLogVolume)
            {
                errors.Add($"volume name {name} is reserved for the mesh's sidecar; rename the volume or opt the pod out with {InjectionAnnotations.Inject}: \"false\"");
            }
        }
    }

    private sealed record PodSettings(
        IReadOnlyList<int> ExcludeInboundPorts,
        IReadOnlyList<int> ExcludeOutboundPorts,
        IReadOnlyList<string> ExcludeOutboundIPRanges,
        Dictionary<string, string> Requests,
        Dictionary<string, string> Limits);

    private JsonArray BuildPatch(V1Pod pod, PodSettings settings)
    {
        var spec = pod.Spec;
        var patch = new JsonArray();
        var probes = ProbeRewriter.Plan(pod, HealthPort);

        // 1. Annotations: the status (what was added) and, unless the app declares its own, Prometheus scraping of the sidecar.
        var added = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            [InjectionAnnotations.Status] = StatusJson(),
        };
        var existing = pod.Metadata?.Annotations;
        if (existing is null || !existing.ContainsKey(InjectionAnnotations.PrometheusScrape))
        {
            added[InjectionAnnotations.PrometheusScrape] = "true";
            added[InjectionAnnotations.PrometheusPort] = HealthPort.ToString(CultureInfo.InvariantCulture);
            added[InjectionAnnotations.PrometheusPath] = "/metrics";
        }
        if (existing is null)
        {
            patch.Add(Op("add", "/metadata/annotations", new JsonObject([.. added.Select(a => KeyValuePair.Create(a.Key, (JsonNode?)a.Value))])));
        }
        else
        {
            foreach (var (key, value) in added)
            {
                patch.Add(Op("add", "/metadata/annotations/" + EscapePointer(key), JsonValue.Create(value)));
            }
        }

        // 2. The capture init container, then the sidecar, before any init container of the pod's own.
        var init = ToNode(InitContainer(settings));
        var sidecar = ToNode(SidecarContainer(spec, settings, probes));
        if (spec.InitContainers is null)
        {
            patch.Add(Op("add", "/spec/initContainers", new JsonArray(init, sidecar)));
        }
        else
        {
            patch.Add(Op("add", "/spec/initContainers/0", init));
            patch.Add(Op("add", "/spec/initContainers/1", sidecar));
        }

        // 3. The projected service-account token (audience: the control plane) and the trust bundle.
        var token = ToNode(new V1Volume
        {
            Name = TokenVolume,
            Projected = new V1ProjectedVolumeSource
            {
                Sources =
                [
                    new V1VolumeProjection
                    {
                        ServiceAccountToken = new V1ServiceAccountTokenProjection
                        {
                            Audience = config.TokenAudience,
                            ExpirationSeconds = TokenExpirationSeconds,
                            Path = "token",
                        },
                    },
                ],
            },
        });
        var bundle = ToNode(new V1Volume { Name = TrustBundleVolume, ConfigMap = new V1ConfigMapVolumeSource { Name = TrustBundleConfigMap } });
        JsonNode[] volumes = DecisionLogSource() is { } log ? [token, bundle, ToNode(log)] : [token, bundle];
        if (spec.Volumes is null)
        {
            patch.Add(Op("add", "/spec/volumes", new JsonArray(volumes)));
        }
        else
        {
            foreach (var volume in volumes)
            {
                patch.Add(Op("add", "/spec/volumes/-", volume));
            }
        }

        // 4. App probes through the sidecar's health port.
        foreach (var probe in probes)
        {
            patch.Add(Op("replace", $"/spec/containers/{probe.ContainerIndex}/{probe.Field}", ToNode(probe.Replacement)));
        }
        return patch;
    }

    /// <summary>The decision log's volume when the config turns the log on: an emptyDir, or the named claim.</summary>
    private V1Volume? DecisionLogSource() => config.DecisionLog switch
    {
        { Enabled: false } => null,
        { ClaimName.Length: > 0 } log => new V1Volume { Name = DecisionLogVolume, PersistentVolumeClaim = new V1PersistentVolumeClaimVolumeSource { ClaimName = log.ClaimName } },
        var log => new V1Volume
        {
            Name = DecisionLogVolume,
            EmptyDir = new V1EmptyDirVolumeSource { SizeLimit = log.SizeLimit.Length > 0 ? new ResourceQuantity(log.SizeLimit) : null },
        },
    };

    private string StatusJson() => new JsonObject
    {
        ["initContainers"] = new JsonArray(InitName, SidecarName),
        ["volumes"] = config.DecisionLog.Enabled ? new JsonArray(TokenVolume, TrustBundleVolume, DecisionLogVolume) : new JsonArray(TokenVolume, TrustBundleVolume),
        ["image"] = config.Image,
    }.ToJsonString();

    private V1Container InitContainer(PodSettings settings)
    {
        var args = new List<string>
        {
            "capture",
            "--inbound-port", Number(InboundPort),
            "--outbound-port", Number(OutboundPort),
            "--proxy-uid", config.ProxyUid.ToString(CultureInfo.InvariantCulture),
            "--exclude-inbound-ports", string.Join(',', settings.ExcludeInboundPorts.Select(Number)),
        };
        if (settings.ExcludeOutboundPorts.Count > 0)
        {
            args.AddRange(["--exclude-outbound-ports", string.Join(',', settings.ExcludeOutboundPorts.Select(Number))]);
        }
        if (settings.ExcludeOutboundIPRanges.Count > 0)
        {
            args.AddRange(["--exclude-outbound-cidrs", string.Join(',', settings.ExcludeOutboundIPRanges)]);
        }
        return new V1Container
        {
            Name = InitName,
            Image = config.Image,
            ImagePullPolicy = config.ImagePullPolicy,
            Args = args,
            Resources = Resources(settings),
            SecurityContext = new V1SecurityContext
            {
                RunAsUser = 0,
                RunAsGroup = 0,
                RunAsNonRoot = false,
                AllowPrivilegeEscalation = false,
                Privileged = false,
                ReadOnlyRootFilesystem = true,
                Capabilities = new V1Capabilities { Add = ["NET_ADMIN", "NET_RAW"], Drop = ["ALL"] },
            },
        };
    }

    private V1Container SidecarContainer(V1PodSpec spec, PodSettings settings, IReadOnlyList<ProbeRewriter.Rewrite> probes)
    {
        var args = new List<string>
        {
            "--control-plane", config.ControlPlaneAddress,
            "--trust-bundle", TrustBundleDirectory + "/root-cert.pem",
            "--trust-domain", config.TrustDomain,
            "--service-account-token-file", TokenDirectory + "/token",
            // The pod IP, which kubelet expands from the variable below: the sidecar listens there and registers it
            // for callers (0.0.0.0 would be registered as is, and no other pod could reach it).
            "--inbound-address", "$(POD_IP)",
            "--health-port", Number(HealthPort),
        };
        // The app's TCP ports, in container order; the sidecar forwards inbound connections to them on 127.0.0.1, as
        // HTTP (sniffed: HTTP/1.1, HTTP/2, gRPC) unless the port declares a protocol that is not (then relayed as TCP).
        var appPorts = (spec.Containers ?? [])
            .SelectMany(c => c.Ports ?? [])
            .Where(p => p.Protocol is null or "TCP")
            .DistinctBy(p => p.ContainerPort);
        foreach (var port in appPorts)
        {
            args.AddRange([IsOpaqueTcp(port) ? "--tcp-port" : "--app-port", Number(port.ContainerPort)]);
        }

        var ready = new V1HTTPGetAction { Path = "/healthz/ready", Port = HealthPort };
        var container = new V1Container
        {
            Name = SidecarName,
            Image = config.Image,
            ImagePullPolicy = config.ImagePullPolicy,
            RestartPolicy = "Always",
            Args = args,
            Ports = [new V1ContainerPort { Name = "ztm-health", ContainerPort = HealthPort }],
            Resources = Resources(settings),
            VolumeMounts =
            [
                new V1VolumeMount { Name = TokenVolume, MountPath = TokenDirectory, ReadOnlyProperty = true },
                new V1VolumeMount { Name = TrustBundleVolume, MountPath = TrustBundleDirectory, ReadOnlyProperty = true },
            ],
            // App containers start once this passes: the sidecar holds a certificate and its first policy.
            StartupProbe = new V1Probe { HttpGet = ready, PeriodSeconds = 1, FailureThreshold = 600 },
            ReadinessProbe = new V1Probe { HttpGet = ready, PeriodSeconds = 1, FailureThreshold = 3 },
            SecurityContext = new V1SecurityContext
            {
                RunAsUser = config.ProxyUid,
                RunAsGroup = config.ProxyUid,
                RunAsNonRoot = true,
                ReadOnlyRootFilesystem = true,
                AllowPrivilegeEscalation = false,
                Capabilities = new V1Capabilities { Drop = ["ALL"] },
            },
        };
        container.Env = [new V1EnvVar { Name = "POD_IP", ValueFrom = new V1EnvVarSource { FieldRef = new V1ObjectFieldSelector { FieldPath = "status.podIP" } } }];
        if (config.DecisionLog.Enabled)
        {
            args.AddRange(["--decision-log", DecisionLogDirectory]);
            var mount = new V1VolumeMount { Name = DecisionLogVolume, MountPath = DecisionLogDirectory };
            if (config.DecisionLog.ClaimName.Length > 0)
            {
                // One claim holds the logs of many pods: each writes its own directory (segment names would collide).
                container.Env.Add(new V1EnvVar { Name = "POD_NAME", ValueFrom = new V1EnvVarSource { FieldRef = new V1ObjectFieldSelector { FieldPath = "metadata.name" } } });
                mount.SubPathExpr = "$(POD_NAME)";
            }
            container.VolumeMounts.Add(mount);
        }
        if (probes.Count > 0)
        {
            container.Env.Add(new V1EnvVar { Name = "ZTM_APP_PROBES", Value = ProbeRewriter.ToEnvironment(probes) });
        }
        return container;
    }

    /// <summary>Protocols that are not HTTP, as a container port's name or its prefix (Istio's convention: <c>tcp-db</c>, <c>mysql</c>).</summary>
    private static readonly HashSet<string> OpaqueProtocols = new(StringComparer.OrdinalIgnoreCase)
    {
        "tcp", "tls", "mongo", "mongodb", "mysql", "redis", "postgres", "postgresql", "kafka", "amqp", "mqtt", "nats", "cassandra", "zookeeper", "memcached",
    };

    private static bool IsOpaqueTcp(V1ContainerPort port)
    {
        var hint = port.Name?.Split('-', 2)[0];
        return hint is not null && OpaqueProtocols.Contains(hint);
    }

    private static V1ResourceRequirements? Resources(PodSettings settings)
    {
        if (settings.Requests.Count == 0 && settings.Limits.Count == 0)
        {
            return null;
        }
        return new V1ResourceRequirements
        {
            Requests = settings.Requests.Count == 0 ? null : settings.Requests.ToDictionary(r => r.Key, r => new ResourceQuantity(r.Value)),
            Limits = settings.Limits.Count == 0 ? null : settings.Limits.ToDictionary(r => r.Key, r => new ResourceQuantity(r.Value)),
        };
    }

    private static string Number(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static JsonObject Op(string op, string path, JsonNode? value) => new() { ["op"] = op, ["path"] = path, ["value"] = value };

    private static JsonNode ToNode(object model) => JsonNode.Parse(KubernetesJson.Serialize(model))!;

    /// <summary>RFC 6901: '~' is written '~0' and '/' is written '~1' in a JSON pointer token.</summary>
    public static string EscapePointer(string token) => token.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);
}
