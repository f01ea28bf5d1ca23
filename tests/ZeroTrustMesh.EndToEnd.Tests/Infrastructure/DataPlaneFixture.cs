using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>
/// The mesh the data-plane tests share: one control plane, the <c>orders</c> demo app behind its sidecar
/// (shop/orders, its HTTP and gRPC ports and its TCP port declared) and a <c>frontend</c> sidecar (shop/frontend)
/// that the tests use as the calling application's sidecar. Tests that share it do not change it.
/// </summary>
public class DataPlaneFixture : ControlPlaneFixture
{
    public const string FrontendId = "spiffe://cluster.local/ns/shop/sa/frontend";
    public const string OrdersId = "spiffe://cluster.local/ns/shop/sa/orders";

    internal DemoApp Orders { get; private set; } = null!;

    internal Sidecar OrdersSidecar { get; private set; } = null!;

    internal Sidecar Frontend { get; private set; } = null!;

    /// <summary>The mesh CA's certificate with its key, to sign certificates the control plane would never issue.</summary>
    internal System.Security.Cryptography.X509Certificates.X509Certificate2 MeshCa => ZeroTrustMesh.Identity.Pem.LoadCertificateWithKey(
        Path.Combine(ControlPlane.DataDir, "ca", "ca.crt"), Path.Combine(ControlPlane.DataDir, "ca", "ca.key"));

    /// <summary>Flags of the orders sidecar beyond the app's ports (a variant of the mesh runs the same tests).</summary>
    protected virtual string[] OrdersSidecarFlags => [];

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        (Orders, OrdersSidecar, Frontend) = await StartOrdersAndFrontendAsync(Mesh, ControlPlane, ordersSidecarFlags: OrdersSidecarFlags);
    }

    /// <summary>Starts the orders app, its sidecar and the frontend sidecar, and waits until both hold an SVID and are registered.</summary>
    /// <param name="allowNamespace">Apply a policy that lets namespace shop call orders (tests of the data plane); false leaves orders with no policy.</param>
    /// <param name="ordersSidecarFlags">More flags for the orders sidecar.</param>
    internal static async Task<(DemoApp Orders, Sidecar OrdersSidecar, Sidecar Frontend)> StartOrdersAndFrontendAsync(TestMesh mesh, ControlPlane controlPlane, bool allowNamespace = true,
        string[]? ordersSidecarFlags = null)
    {
        var policy = allowNamespace ? await controlPlane.AllowNamespaceAsync("orders") : "v0";
        var orders = await DemoApp.StartAsync(mesh, "orders");
        var ordersSidecar = await mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "orders"), "sidecar-orders",
            [.. orders.SidecarArguments, .. ordersSidecarFlags ?? []]);
        var frontend = await mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "frontend"), "sidecar-frontend");
        foreach (var sidecar in new[] { ordersSidecar, frontend })
        {
            await sidecar.WaitForIdentityAsync();
            await sidecar.Process.WaitForLineAsync("registered with the control plane ");
        }
        await ordersSidecar.WaitForPolicyAsync(policy);
        return (orders, ordersSidecar, frontend);
    }
}

[CollectionDefinition(Name)]
public sealed class DataPlaneCollection : ICollectionFixture<DataPlaneFixture>
{
    public const string Name = "data plane";
}

/// <summary>The same mesh with the orders sidecar's <c>--http1-fast-path</c> on: HTTP/1.1 reaches orders through the sidecar's own framing.</summary>
public sealed class DataPlaneHttp1FastPathFixture : DataPlaneFixture
{
    protected override string[] OrdersSidecarFlags => ["--http1-fast-path", "true"];
}

[CollectionDefinition(Name)]
public sealed class DataPlaneHttp1FastPathCollection : ICollectionFixture<DataPlaneHttp1FastPathFixture>
{
    public const string Name = "data plane, HTTP/1.1 fast path";
}

/// <summary>How an application reaches the mesh through its sidecar's outbound listener, and what the sidecars export.</summary>
internal static partial class Mesh
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A client whose every connection goes to the sidecar's outbound port while the request names the service
    /// (<c>http://orders:PORT/…</c>): the service name arrives as <c>Host</c> (HTTP/1.1) or <c>:authority</c> (HTTP/2),
    /// as it would for an app whose traffic is captured. <paramref name="connections"/> counts the connections opened.
    /// </summary>
    public static SocketsHttpHandler HostAddressed(Sidecar sidecar, StrongBox<int>? connections = null) => ConnectingTo(sidecar.Outbound, connections);

    /// <summary>A client whose every connection goes to <paramref name="endPoint"/>, whatever the request's URI names.</summary>
    public static SocketsHttpHandler ConnectingTo(IPEndPoint endPoint, StrongBox<int>? connections = null) => new()
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        ConnectCallback = async (_, cancellation) =>
        {
            if (connections is not null)
            {
                Interlocked.Increment(ref connections.Value);
            }
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(endPoint, cancellation);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    };

    /// <summary>A client that uses the sidecar as its HTTP proxy (absolute-form requests), like <c>HTTP_PROXY=http://127.0.0.1:15001</c>.</summary>
    public static SocketsHttpHandler Proxied(Sidecar sidecar) => new()
    {
        UseProxy = true,
        Proxy = new WebProxy(new Uri($"http://{sidecar.Outbound}")),
        AllowAutoRedirect = false,
        UseCookies = false,
    };

    public static async Task<string> MetricsAsync(Sidecar sidecar)
    {
        using var http = new HttpClient { Timeout = Timeout };
        return await http.GetStringAsync(new Uri(sidecar.Admin, "/metrics"));
    }

    /// <summary>The value of the sample of <paramref name="name"/> whose labels include all of <paramref name="labels"/>; 0 when there is none.</summary>
    public static double Sample(string metrics, string name, params (string Label, string Value)[] labels)
    {
        double total = 0;
        foreach (Match match in SampleLine().Matches(metrics))
        {
            if (match.Groups["name"].Value != name)
            {
                continue;
            }
            var present = match.Groups["labels"].Value;
            if (labels.All(l => present.Contains($"{l.Label}=\"{l.Value}\"", StringComparison.Ordinal)))
            {
                total += double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture);
            }
        }
        return total;
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>[^}]*)\})? (?<value>\S+)$", RegexOptions.Multiline)]
    private static partial Regex SampleLine();
}
