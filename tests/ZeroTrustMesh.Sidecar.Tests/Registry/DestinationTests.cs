using System.Net;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Sidecar.Registry;

namespace ZeroTrustMesh.Sidecar.Tests.Registry;

/// <summary>Which application port a request for a destination reaches: standalone the port dialled, in Kubernetes the Service port's target.</summary>
public sealed class DestinationTests
{
    private static readonly Destination Standalone =
        new("orders.shop", SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders"), IPEndPoint.Parse("10.1.0.5:15006"), [8080, 8081], [5432]);

    private static readonly Destination Kubernetes = Standalone with
    {
        ServicePorts = new Dictionary<int, int> { [80] = 8080, [9090] = 8081, [5432] = 5432, [6000] = 5432, [7000] = 7777 },
    };

    [Theory]
    [InlineData(null, 8080)] // no port: the first HTTP port
    [InlineData(80, 8080)]
    [InlineData(8081, 8081)]
    [InlineData(9999, null)]
    public void Standalone_the_port_dialled_is_the_apps(int? requested, int? expected) => Assert.Equal(expected, Standalone.HttpPortFor(requested));

    [Theory]
    [InlineData(80, 8080)]   // Service port → target port
    [InlineData(9090, 8081)]
    [InlineData(5432, null)] // a TCP port is not an HTTP one
    [InlineData(7000, null)] // a target the endpoint does not declare
    [InlineData(8081, 8081)] // the pod's own port, dialled directly
    [InlineData(null, 8080)]
    public void In_kubernetes_a_service_port_reaches_its_target(int? requested, int? expected) => Assert.Equal(expected, Kubernetes.HttpPortFor(requested));

    [Theory]
    [InlineData(5432, 5432)]
    [InlineData(6000, 5432)]
    [InlineData(80, null)]
    [InlineData(1234, null)]
    public void Tcp_ports_map_the_same_way(int requested, int? expected) => Assert.Equal(expected, Kubernetes.TcpPortFor(requested));
}
