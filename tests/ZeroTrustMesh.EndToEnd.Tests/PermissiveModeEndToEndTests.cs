using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// PeerAuthentication PERMISSIVE through real processes: the orders sidecar's inbound port then also takes plaintext
/// HTTP (HTTP/1.1 and h2c), with no caller identity — a spoofed identity header is removed and none is set, rules with
/// principals do not match, rules without a source do; mTLS callers keep their identity; STRICT refuses plaintext
/// before any HTTP, and a policy change applies to the next connection.
/// </summary>
public sealed class PermissiveModeEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Spoofed = "spiffe://cluster.local/ns/shop/sa/admin";

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    /// <summary>frontend may GET /orders/*; anyone, authenticated or not, may GET /public/*.</summary>
    private static string Policies(string peerAuthenticationSpec) => $$"""
        apiVersion: security.ztm.dev/v1
        kind: PeerAuthentication
        metadata: {name: orders-mtls, namespace: shop}
        spec:
          selector: {service: orders}
        {{peerAuthenticationSpec}}
        ---
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-access, namespace: shop}
        spec:
          selector: {service: orders}
          action: ALLOW
          rules:
            - from:
                - source: {principals: ["{{DataPlaneFixture.FrontendId}}"]}
              to:
                - operation: {methods: ["GET"], paths: ["/orders/*"]}
            - to:
                - operation: {methods: ["GET"], paths: ["/public/*"]}
        """;

    [Fact]
    public async Task A_permissive_port_takes_plaintext_http1_and_h2c_without_identity_while_mtls_callers_keep_theirs()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane, allowNamespace: false);
        // The workload is STRICT; only its HTTP port (the default one) is PERMISSIVE.
        var version = await controlPlane.ApplyPolicyAsync(Policies($$"""
              mode: STRICT
              portLevelMtls:
                - {port: {{orders.HttpPort}}, mode: PERMISSIVE}
            """));
        await ordersSidecar.WaitForPolicyAsync(version);
        using var plaintext = new HttpClient(Plaintext(ordersSidecar)) { Timeout = Mesh.Timeout };

        // HTTP/1.1 without TLS: a rule without a source allows it; the app sees no identity, not even the spoofed one.
        using (var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/public/menu"))
        {
            request.Headers.Add("x-ztm-client-identity", Spoofed);
            using var response = await plaintext.SendAsync(request);
            var echo = await EchoClient.ReadEcho(response);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("HTTP/1.1", echo.GetProperty("protocol").GetString());
            Assert.True(!echo.TryGetProperty("caller", out var caller) || caller.ValueKind == JsonValueKind.Null, echo.ToString());
            Assert.False(echo.GetProperty("headers").TryGetProperty("x-ztm-client-identity", out _), echo.ToString());
        }

        // h2c prior knowledge works the same way, and reaches the app as HTTP/2.
        using (var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/public/menu") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact })
        {
            request.Headers.Add("x-ztm-client-identity", Spoofed);
            using var response = await plaintext.SendAsync(request);
            var echo = await EchoClient.ReadEcho(response);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("HTTP/2", echo.GetProperty("protocol").GetString());
            Assert.False(echo.GetProperty("headers").TryGetProperty("x-ztm-client-identity", out _), echo.ToString());
        }

        // A rule with principals never matches a caller without a verified identity.
        using (var denied = await plaintext.GetAsync(new Uri("http://orders/orders/1")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
            Assert.Contains("no ALLOW policy matched", await denied.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // The gRPC port is not PERMISSIVE: a plaintext request for it is refused, naming the PeerAuthentication.
        using (var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/public/menu"))
        {
            request.Headers.Add("x-ztm-target-port", orders.GrpcPort.ToString(CultureInfo.InvariantCulture));
            using var response = await plaintext.SendAsync(request);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Contains($"mTLS required: port {orders.GrpcPort} of this workload is STRICT (PeerAuthentication 'shop/orders-mtls')",
                await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // mTLS callers are unaffected: the frontend's identity still reaches the app.
        using (var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout })
        using (var response = await http.GetAsync(new Uri($"http://orders:{orders.HttpPort}/orders/1")))
        {
            var echo = await EchoClient.ReadEcho(response);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(DataPlaneFixture.FrontendId, echo.GetProperty("caller").GetString());
        }

        // Plaintext is visible: in the access log and in metrics, the source is "plaintext".
        await ordersSidecar.Process.WaitForLineAsync(l => l.Contains("\"source\":\"plaintext\"", StringComparison.Ordinal) && l.Contains("\"status\":200", StringComparison.Ordinal), "plaintext access log line");
        var metrics = await Mesh.MetricsAsync(ordersSidecar);
        Assert.Equal(2, Mesh.Sample(metrics, "ztm_requests_total", ("source", "plaintext"), ("code", "200")));
        Assert.True(Mesh.Sample(metrics, "ztm_inbound_connections_total", ("security", "plaintext")) >= 2, metrics);
        Assert.True(Mesh.Sample(metrics, "ztm_inbound_connections_total", ("security", "mtls")) >= 1, metrics);
        Assert.Equal(1, Mesh.Sample(metrics, "ztm_rejected_requests_total", ("reason", "mtls_required")));
    }

    [Fact]
    public async Task Switching_strict_to_permissive_and_back_applies_to_new_connections()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (_, ordersSidecar, _) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane, allowNamespace: false);
        var plainGet = Encoding.ASCII.GetBytes($"GET /public/menu HTTP/1.1\r\nHost: orders\r\nx-ztm-client-identity: {Spoofed}\r\nConnection: close\r\n\r\n");

        // Explicit STRICT: refused before any HTTP, as without a PeerAuthentication.
        await ordersSidecar.WaitForPolicyAsync(await controlPlane.ApplyPolicyAsync(Policies("  mode: STRICT")));
        Assert.Empty(await EchoClient.SendRawAsync(ordersSidecar.Inbound, plainGet, Mesh.Timeout));

        await ordersSidecar.WaitForPolicyAsync(await controlPlane.ApplyPolicyAsync(Policies("  mode: PERMISSIVE")));
        var dumped = (await ordersSidecar.ConfigDumpAsync()).GetProperty("policy");
        Assert.Equal("PERMISSIVE", dumped.GetProperty("inboundMtls").GetString());
        Assert.Equal("shop/orders-mtls", dumped.GetProperty("peerAuthentication").GetString());
        var answer = Encoding.ASCII.GetString(await EchoClient.SendRawAsync(ordersSidecar.Inbound, plainGet, Mesh.Timeout));
        Assert.StartsWith("HTTP/1.1 200 OK", answer, StringComparison.Ordinal);
        Assert.DoesNotContain(Spoofed, answer, StringComparison.Ordinal);
        // A kept-alive connection, opened while PERMISSIVE.
        var connections = new StrongBox<int>();
        using var kept = new HttpClient(Plaintext(ordersSidecar, connections)) { Timeout = Mesh.Timeout };
        using (var response = await kept.GetAsync(new Uri("http://orders/public/menu")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await ordersSidecar.WaitForPolicyAsync(await controlPlane.ApplyPolicyAsync(Policies("  mode: STRICT")));
        Assert.Empty(await EchoClient.SendRawAsync(ordersSidecar.Inbound, plainGet, Mesh.Timeout));
        // The connection accepted earlier gets no more plaintext requests through either.
        using (var response = await kept.GetAsync(new Uri("http://orders/public/menu")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Contains("mTLS required", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        Assert.Equal(1, connections.Value);

        var metrics = await Mesh.MetricsAsync(ordersSidecar);
        Assert.Equal(2, Mesh.Sample(metrics, "ztm_tls_handshake_failures_total", ("direction", "inbound"), ("reason", "NotTls")));
    }

    /// <summary>A client whose connections go, without TLS, straight to the sidecar's inbound port.</summary>
    private static SocketsHttpHandler Plaintext(Sidecar sidecar, StrongBox<int>? connections = null) => Mesh.ConnectingTo(sidecar.Inbound, connections);
}
