using k8s.Models;

namespace ZeroTrustMesh.KubernetesDouble;

/// <summary>
/// The objects the control plane's Kubernetes service registry reads, as a cluster would hold them, for tests to seed
/// into the double: a Service, an EndpointSlice naming its ready pods, and the pods themselves (their service
/// accounts are their identities; the injector's <c>ztm.dev/status</c> annotation marks them meshed).
/// </summary>
public static class ClusterObjects
{
    /// <summary>The annotation the injector sets on a pod it gave a sidecar.</summary>
    public const string SidecarStatusAnnotation = "ztm.dev/status";

    /// <summary>A running pod <paramref name="ns"/>/<paramref name="name"/> as service account <paramref name="serviceAccount"/>, with <paramref name="podIp"/>.</summary>
    public static V1Pod Pod(string ns, string name, string serviceAccount, string? podIp, bool meshed) => new()
    {
        ApiVersion = "v1",
        Kind = "Pod",
        Metadata = new V1ObjectMeta
        {
            Name = name,
            NamespaceProperty = ns,
            Annotations = meshed ? new Dictionary<string, string> { [SidecarStatusAnnotation] = """{"initContainers":["ztm-init","ztm-sidecar"]}""" } : null,
        },
        Spec = new V1PodSpec { ServiceAccountName = serviceAccount, Containers = [new V1Container { Name = "app", Image = "app:1" }] },
        Status = new V1PodStatus { Phase = "Running", PodIP = podIp },
    };

    /// <summary>A ClusterIP Service with one TCP port named <paramref name="portName"/>, <paramref name="port"/> → <paramref name="targetPort"/> (a number or a port name).</summary>
    public static V1Service Service(string ns, string name, string clusterIp, string portName, int port, IntOrString targetPort) => new()
    {
        ApiVersion = "v1",
        Kind = "Service",
        Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = ns },
        Spec = new V1ServiceSpec
        {
            ClusterIP = clusterIp,
            ClusterIPs = [clusterIp],
            Ports = [new V1ServicePort { Name = portName, Port = port, TargetPort = targetPort, Protocol = "TCP" }],
        },
    };

    /// <summary>
    /// The EndpointSlice of Service <paramref name="service"/> (its <c>kubernetes.io/service-name</c> label): one TCP port
    /// <paramref name="portName"/> resolved to <paramref name="port"/>, and a ready endpoint per pod.
    /// </summary>
    public static V1EndpointSlice EndpointSlice(string ns, string name, string service, string portName, int port, params (string Address, string Pod)[] endpoints) => new()
    {
        ApiVersion = "discovery.k8s.io/v1",
        Kind = "EndpointSlice",
        Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = ns, Labels = new Dictionary<string, string> { ["kubernetes.io/service-name"] = service } },
        AddressType = "IPv4",
        Ports = [new Discoveryv1EndpointPort { Name = portName, Port = port, Protocol = "TCP" }],
        Endpoints = [.. endpoints.Select(e => new V1Endpoint
        {
            Addresses = [e.Address],
            Conditions = new V1EndpointConditions { Ready = true },
            TargetRef = new V1ObjectReference { Kind = "Pod", Name = e.Pod, NamespaceProperty = ns },
        })],
    };
}
