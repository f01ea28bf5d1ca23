using System.Collections.Frozen;
using System.Net;
using k8s;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Injection;
using ZeroTrustMesh.ControlPlane.Kubernetes;
using ZeroTrustMesh.Hosting;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Registry;

/// <summary>
/// The registry in Kubernetes (<c>--kubernetes</c>, registered instead of <see cref="LocalServiceRegistry"/>): the
/// cluster's Services, EndpointSlices (<c>discovery.k8s.io/v1</c>) and Pods, each followed by a
/// <see cref="KubernetesInformer"/>. What the answers are:
/// 1. a service is <c>name.namespace</c>; its endpoints are the ready endpoints of the slices labelled
///    <c>kubernetes.io/service-name</c>, one per pod (the first address, as kube-proxy uses);
/// 2. an endpoint's identity is its pod's service account (<c>spiffe://td/ns/NS/sa/SA</c>), so the identities a
///    destination may present are exactly those of the pods behind it, each endpoint checked against its own;
/// 3. a pod is meshed when the injector marked it (<c>ztm.dev/status</c>); its sidecar listens on
///    <see cref="SidecarInboundPort"/>. A pod without a sidecar is reported with no identity, and callers' sidecars
///    refuse to send to it (Istio's auto-mTLS and Linkerd fall back to plaintext there; a zero-trust mesh does not:
///    exclude such destinations from capture instead). An endpoint whose pod is not (or no longer) known is left
///    out: a deleted pod serves nothing, and a new one arrives with its own event;
/// 4. each Service port is HTTP or opaque TCP by its <c>appProtocol</c> (http, http2, grpc, grpc-web, h2c,
///    kubernetes.io/h2c → HTTP; anything else → TCP), else by its name as Istio reads it (<c>http</c>, <c>http2</c>,
///    <c>grpc</c>, <c>grpc-web</c>, <c>h2c</c>, alone or before a <c>-</c>; anything else, or no name, → TCP: there is
///    no protocol sniffing, so a port that is not declared HTTP keeps whatever protocol it speaks). Its target port
///    is the one the slice resolved (named targetPorts included); only TCP ports are meshed (UDP and SCTP are not);
/// 5. sidecars' Register calls are heartbeats only: the API server says where pods are.
/// The answers are rebuilt from the followed objects on the first call after a change (a burst of events costs one
/// rebuild). Until every resource has been listed once, nothing resolves: a half-listed cluster would answer with a
/// part of a service's endpoints.
/// </summary>
internal sealed class KubernetesServiceRegistry :
    IServiceRegistry, IHostedService, IDisposable,
    IInformerHandler<V1Service>, IInformerHandler<V1EndpointSlice>, IInformerHandler<V1Pod>
{
    /// <summary>The injected sidecar's inbound mTLS port (the chart's and injector's 15006).</summary>
    public const int SidecarInboundPort = 15006;

    /// <summary>The cluster's DNS domain, for names like <c>orders.shop.svc.cluster.local</c>.</summary>
    public const string ClusterDomain = "cluster.local";

    private const string ServiceNameLabel = "kubernetes.io/service-name";
    private const string Services = "services";
    private const string EndpointSlices = "endpointslices";
    private const string Pods = "pods";

    /// <summary>How long start waits for the first lists before the control plane serves without them.</summary>
    private static readonly TimeSpan FirstListWait = TimeSpan.FromSeconds(10);

    private static readonly FrozenSet<string> HttpProtocols =
        FrozenSet.Create(StringComparer.OrdinalIgnoreCase, "http", "http2", "grpc", "grpc-web", "h2c", "kubernetes.io/h2c");

    private readonly IKubernetes _client;
    private readonly string _trustDomain;
    private readonly TimeProvider _time;
    private readonly ILogger<KubernetesServiceRegistry> _logger;
    private readonly LogRateLimiter _logLimit;
    private readonly Lock _gate = new();
    private readonly Dictionary<(string Namespace, string Name), V1Service> _services = [];
    private readonly Dictionary<(string Namespace, string Name), V1EndpointSlice> _slices = [];
    private readonly Dictionary<(string Namespace, string Name), PodFacts> _pods = [];
    private readonly HashSet<string> _listed = [];
    private readonly TaskCompletionSource _allListed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _running = [];
    private Answers? _answers; // null: rebuild on the next call
    private int _disposed;

    public KubernetesServiceRegistry(IKubernetes client, ControlPlaneOptions options, TimeProvider time, ILogger<KubernetesServiceRegistry> logger)
    {
        _client = client;
        _trustDomain = options.TrustDomain;
        _time = time;
        _logger = logger;
        _logLimit = new LogRateLimiter(time, 5, TimeSpan.FromMinutes(1));
    }

    public TimeSpan Ttl => LocalServiceRegistry.DefaultTtl;

    /// <summary>Raised after a list or watch event changed what the registry follows (its answers are rebuilt on the next call).</summary>
    public event Action? Updated;

    /// <summary>Whether every resource has been listed once (before that, nothing resolves).</summary>
    public bool Synced => _allListed.Task.IsCompleted;

    public RegisteredEndpoint? Register(SpiffeId identity, string inboundAddress, IReadOnlyList<int> httpPorts, IReadOnlyList<int> tcpPorts, string? serviceAddress) => null;

    public IReadOnlyList<RegisteredEndpoint> ResolveName(string name)
    {
        var answers = Current();
        foreach (var suffix in (string[])[".svc." + ClusterDomain, ".svc"])
        {
            if (name.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                name = name[..^suffix.Length];
                break;
            }
        }
        if (name.Contains('.', StringComparison.Ordinal))
        {
            return answers.ByName.GetValueOrDefault(name) ?? [];
        }
        return answers.ByShortName.TryGetValue(name, out var full) && full.Count == 1 ? answers.ByName[full[0]] : [];
    }

    public IReadOnlyList<RegisteredEndpoint> ResolveAddress(string address)
    {
        var (host, port) = SplitHostPort(address);
        if (!IPAddress.TryParse(host, out var ip))
        {
            return [];
        }
        var answers = Current();
        var key = ip.ToString();
        if (answers.ByServiceAddress.TryGetValue(key, out var services))
        {
            foreach (var service in services)
            {
                var endpoints = answers.ByName[service];
                if (port is null || endpoints.Any(e => e.ServicePorts.ContainsKey(port.Value)))
                {
                    return endpoints;
                }
            }
        }
        if (answers.ByPodAddress.TryGetValue(key, out var pods))
        {
            // A pod dialled directly (a headless Service): the port is the pod's own, so no Service port applies.
            var own = pods.Where(e => port is null || e.HttpPorts.Contains(port.Value) || e.TcpPorts.Contains(port.Value)).ToList();
            return own.Count == 0 ? [] : [.. own.Where(e => e.Service == own[0].Service).Select(e => e with { ServicePorts = new Dictionary<int, int>() })];
        }
        return [];
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            var stopping = _stopping.Token;
            _running.Add(Task.Run(() => KubernetesInformer.RunAsync(new InformerSource<V1Service>(
                Services,
                async ct =>
                {
                    var list = await _client.CoreV1.ListServiceForAllNamespacesAsync(cancellationToken: ct);
                    return ((IReadOnlyList<V1Service>)[.. list.Items], list.Metadata?.ResourceVersion ?? "");
                },
                (version, onError, ct) => _client.CoreV1.WatchListServiceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: version, onError: onError, cancellationToken: ct),
                s => s.Metadata?.ResourceVersion), this, _time, stopping), CancellationToken.None));
            _running.Add(Task.Run(() => KubernetesInformer.RunAsync(new InformerSource<V1EndpointSlice>(
                EndpointSlices,
                async ct =>
                {
                    var list = await _client.DiscoveryV1.ListEndpointSliceForAllNamespacesAsync(cancellationToken: ct);
                    return ((IReadOnlyList<V1EndpointSlice>)[.. list.Items], list.Metadata?.ResourceVersion ?? "");
                },
                (version, onError, ct) => _client.DiscoveryV1.WatchListEndpointSliceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: version, onError: onError, cancellationToken: ct),
                s => s.Metadata?.ResourceVersion), this, _time, stopping), CancellationToken.None));
            _running.Add(Task.Run(() => KubernetesInformer.RunAsync(new InformerSource<V1Pod>(
                Pods,
                async ct =>
                {
                    var list = await _client.CoreV1.ListPodForAllNamespacesAsync(cancellationToken: ct);
                    return ((IReadOnlyList<V1Pod>)[.. list.Items], list.Metadata?.ResourceVersion ?? "");
                },
                (version, onError, ct) => _client.CoreV1.WatchListPodForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: version, onError: onError, cancellationToken: ct),
                p => p.Metadata?.ResourceVersion), this, _time, stopping), CancellationToken.None));
        }
        try
        {
            await _allListed.Task.WaitAsync(FirstListWait, _time, cancellationToken);
        }
        catch (TimeoutException)
        {
            ControlPlaneLog.RegistryNotListedYet(_logger, (int)FirstListWait.TotalSeconds);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => KubernetesInformer.StopAsync(_stopping, () =>
    {
        lock (_gate)
        {
            return [.. _running];
        }
    }, cancellationToken);

    public void Listed(string resource, IReadOnlyList<V1Service> items, string resourceVersion) =>
        Replace(resource, _services, items.Select(s => (Key(s.Metadata), s)), items.Count, resourceVersion);

    public void Listed(string resource, IReadOnlyList<V1EndpointSlice> items, string resourceVersion) =>
        Replace(resource, _slices, items.Select(s => (Key(s.Metadata), s)), items.Count, resourceVersion);

    public void Listed(string resource, IReadOnlyList<V1Pod> items, string resourceVersion) =>
        Replace(resource, _pods, items.Select(p => (Key(p.Metadata), PodFacts.Of(p))), items.Count, resourceVersion);

    public void Changed(string resource, WatchEventType type, V1Service item) => Apply(_services, type, Key(item.Metadata), item);

    public void Changed(string resource, WatchEventType type, V1EndpointSlice item) => Apply(_slices, type, Key(item.Metadata), item);

    public void Changed(string resource, WatchEventType type, V1Pod item) => Apply(_pods, type, Key(item.Metadata), PodFacts.Of(item));

    public void Relisting(string resource, string resourceVersion) => ControlPlaneLog.RegistryRelist(_logger, resource, resourceVersion);

    public void Failed(string resource, TimeSpan retryIn, string reason)
    {
        if (_logLimit.TryAcquire("watch:" + resource, out var suppressed, out _))
        {
            ControlPlaneLog.RegistryWatchFailed(_logger, resource, retryIn.TotalSeconds, reason, suppressed);
        }
    }

    private void Replace<T>(string resource, Dictionary<(string, string), T> held, IEnumerable<((string, string) Key, T Value)> items, int count, string resourceVersion)
    {
        lock (_gate)
        {
            held.Clear();
            foreach (var (key, value) in items)
            {
                held[key] = value;
            }
            _listed.Add(resource);
            _answers = null;
            if (_listed.Count == 3)
            {
                _allListed.TrySetResult();
            }
        }
        ControlPlaneLog.RegistryListed(_logger, resource, count, resourceVersion);
        Updated?.Invoke();
    }

    private void Apply<T>(Dictionary<(string, string), T> held, WatchEventType type, (string, string) key, T value)
    {
        lock (_gate)
        {
            if (type == WatchEventType.Deleted)
            {
                held.Remove(key);
            }
            else
            {
                held[key] = value;
            }
            _answers = null;
        }
        Updated?.Invoke();
    }

    private static (string, string) Key(V1ObjectMeta? metadata) => (metadata?.NamespaceProperty ?? "", metadata?.Name ?? "");

    /// <summary>The answers for the objects held now, rebuilt once after a change.</summary>
    private Answers Current()
    {
        var answers = Volatile.Read(ref _answers);
        if (answers is not null)
        {
            return answers;
        }
        lock (_gate)
        {
            return _answers ??= _allListed.Task.IsCompleted ? Build() : Answers.Empty;
        }
    }

    /// <summary>Every service's endpoints, and the indexes the resolves use. Under the lock.</summary>
    private Answers Build()
    {
        var byName = new Dictionary<string, List<RegisteredEndpoint>>(StringComparer.Ordinal);
        foreach (var ((ns, _), slice) in _slices)
        {
            if (slice.Metadata?.Labels?.TryGetValue(ServiceNameLabel, out var serviceName) != true || serviceName is null
                || !_services.TryGetValue((ns, serviceName), out var service) || service.Spec?.Ports is not { } servicePorts)
            {
                continue;
            }
            var name = $"{serviceName}.{ns}";
            var http = new List<int>();
            var tcp = new List<int>();
            var mapped = new Dictionary<int, int>();
            foreach (var port in servicePorts.Where(p => p.Protocol is null or "TCP"))
            {
                // The slice's port of the same name carries the target port as resolved for these pods.
                var target = slice.Ports?.FirstOrDefault(p => (p.Name ?? "") == (port.Name ?? "") && p.Protocol is null or "TCP")?.Port;
                if (target is not { } number)
                {
                    continue;
                }
                mapped[port.Port] = number;
                var list = IsHttp(port) ? http : tcp;
                if (!list.Contains(number))
                {
                    list.Add(number);
                }
            }
            var serviceAddress = ServiceAddresses(service).FirstOrDefault();
            var endpoints = byName.TryGetValue(name, out var existing) ? existing : byName[name] = [];
            foreach (var endpoint in slice.Endpoints ?? [])
            {
                if (endpoint.Conditions?.Ready == false || endpoint.Addresses is not [var address, ..] || !IPAddress.TryParse(address, out var ip))
                {
                    continue;
                }
                SpiffeId? identity = null;
                if (endpoint.TargetRef is { Kind: "Pod" } target)
                {
                    if (!_pods.TryGetValue((target.NamespaceProperty ?? ns, target.Name ?? ""), out var pod))
                    {
                        continue; // gone, or not seen yet
                    }
                    identity = pod.Meshed ? SpiffeId.ForWorkload(_trustDomain, target.NamespaceProperty ?? ns, pod.ServiceAccount) : null;
                }
                var inbound = identity is null ? ip.ToString() : new IPEndPoint(ip, SidecarInboundPort).ToString();
                if (endpoints.Any(e => e.InboundAddress == inbound))
                {
                    continue; // the same pod in two slices (one per address family)
                }
                endpoints.Add(new RegisteredEndpoint(name, identity, inbound, http, tcp, serviceAddress, DateTimeOffset.MaxValue) { ServicePorts = mapped });
            }
        }

        var byServiceAddress = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var byPodAddress = new Dictionary<string, List<RegisteredEndpoint>>(StringComparer.Ordinal);
        var byShortName = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var (name, endpoints) in byName.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            var (serviceName, ns) = (name[..name.IndexOf('.', StringComparison.Ordinal)], name[(name.IndexOf('.', StringComparison.Ordinal) + 1)..]);
            (byShortName.TryGetValue(serviceName, out var names) ? names : byShortName[serviceName] = []).Add(name);
            foreach (var address in ServiceAddresses(_services[(ns, serviceName)]))
            {
                (byServiceAddress.TryGetValue(address, out var services) ? services : byServiceAddress[address] = []).Add(name);
            }
            foreach (var endpoint in endpoints)
            {
                var podIp = endpoint.Identity is null ? endpoint.InboundAddress : IPEndPoint.Parse(endpoint.InboundAddress).Address.ToString();
                (byPodAddress.TryGetValue(podIp, out var pods) ? pods : byPodAddress[podIp] = []).Add(endpoint);
            }
        }
        return new Answers(
            byName.ToFrozenDictionary(e => e.Key, e => (IReadOnlyList<RegisteredEndpoint>)[.. e.Value], StringComparer.Ordinal),
            byShortName.ToFrozenDictionary(e => e.Key, e => (IReadOnlyList<string>)e.Value, StringComparer.Ordinal),
            byServiceAddress.ToFrozenDictionary(e => e.Key, e => (IReadOnlyList<string>)e.Value, StringComparer.Ordinal),
            byPodAddress.ToFrozenDictionary(e => e.Key, e => (IReadOnlyList<RegisteredEndpoint>)e.Value, StringComparer.Ordinal));
    }

    /// <summary>A Service's cluster IPs (both families), none for a headless one.</summary>
    private static IEnumerable<string> ServiceAddresses(V1Service service) =>
        (service.Spec?.ClusterIPs ?? (service.Spec?.ClusterIP is { } one ? [one] : []))
            .Select(a => IPAddress.TryParse(a, out var ip) ? ip.ToString() : null)
            .OfType<string>();

    /// <summary>Whether a Service port carries HTTP (1.1, 2, gRPC): its <c>appProtocol</c>, else its name as Istio reads it.</summary>
    public static bool IsHttp(V1ServicePort port)
    {
        if (port.AppProtocol is { Length: > 0 } appProtocol)
        {
            return HttpProtocols.Contains(appProtocol);
        }
        var name = port.Name ?? "";
        var dash = name.IndexOf('-', StringComparison.Ordinal);
        return HttpProtocols.Contains(dash < 0 ? name : name[..dash]) || name.StartsWith("grpc-web", StringComparison.OrdinalIgnoreCase);
    }

    private static (string Host, int? Port) SplitHostPort(string address)
    {
        var colon = address.LastIndexOf(':');
        return colon > 0 && int.TryParse(address.AsSpan(colon + 1), out var port) && !address.EndsWith(']') && (address.StartsWith('[') || address.IndexOf(':') == colon)
            ? (address[..colon].Trim('[', ']'), port)
            : (address.Trim('[', ']'), null);
    }

    /// <summary>Idempotent: the container disposes the one instance once per registration (registry and hosted service).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        _stopping.Cancel();
        _stopping.Dispose();
    }

    /// <summary>What the registry needs of a pod: its service account, and whether the injector gave it a sidecar.</summary>
    private sealed record PodFacts(string ServiceAccount, bool Meshed)
    {
        public static PodFacts Of(V1Pod pod) => new(
            pod.Spec?.ServiceAccountName is { Length: > 0 } sa ? sa : "default",
            pod.Metadata?.Annotations?.ContainsKey(InjectionAnnotations.Status) == true);
    }

    private sealed record Answers(
        FrozenDictionary<string, IReadOnlyList<RegisteredEndpoint>> ByName,
        FrozenDictionary<string, IReadOnlyList<string>> ByShortName,
        FrozenDictionary<string, IReadOnlyList<string>> ByServiceAddress,
        FrozenDictionary<string, IReadOnlyList<RegisteredEndpoint>> ByPodAddress)
    {
        public static Answers Empty { get; } = new(
            FrozenDictionary<string, IReadOnlyList<RegisteredEndpoint>>.Empty, FrozenDictionary<string, IReadOnlyList<string>>.Empty,
            FrozenDictionary<string, IReadOnlyList<string>>.Empty, FrozenDictionary<string, IReadOnlyList<RegisteredEndpoint>>.Empty);
    }
}
