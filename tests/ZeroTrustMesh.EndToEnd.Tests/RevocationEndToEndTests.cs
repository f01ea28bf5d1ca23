using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using Grpc.Core;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Revocation through real processes: <c>ztmctl revoke</c> → a new config version on every sidecar → a revoked peer is
/// refused at the mTLS handshake (inbound: its client certificate; outbound: its server certificate) with reason
/// <c>Revoked</c> in the handshake-failure metric; the CA refuses to renew a revoked certificate; the list survives a
/// control-plane restart; bad input gets a clear status, message and exit code.
/// </summary>
public sealed class RevocationEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task A_revoked_serial_is_refused_at_the_next_handshake_and_cannot_be_renewed()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        var serial = (await frontend.ConfigDumpAsync()).GetProperty("identity").GetProperty("serial").GetString()!;
        // The frontend resolves orders before it is revoked (through a port orders does not declare: resolved, not
        // connected). A revoked caller gets no registry answers; it goes on with the endpoints it knew.
        using (var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout })
        using (var resolved = await http.GetAsync("http://orders:1/"))
        {
            Assert.Equal(HttpStatusCode.NotFound, resolved.StatusCode);
        }

        var (exit, stdout, _) = await _mesh.ZtmctlAsync("revoke", "--serial", serial, "--reason", "key leaked", "-o", "json");

        Assert.Equal(0, exit);
        var revoked = JsonDocument.Parse(stdout).RootElement;
        var version = revoked.GetProperty("version").GetString()!;
        Assert.True(revoked.GetProperty("changed").GetBoolean());
        Assert.Equal(serial.TrimStart('0'), revoked.GetProperty("revocations")[0].GetProperty("serial").GetString());

        // The list reaches every sidecar as a new version, whatever its policies.
        await ordersSidecar.Process.WaitForLineAsync($"revocations of config {version} applied: 1 in force");
        await frontend.Process.WaitForLineAsync($"revocations of config {version} applied: 1 in force");
        Assert.Equal(1, (await ordersSidecar.ConfigDumpAsync()).GetProperty("revocations").GetProperty("count").GetInt32());

        // The frontend's next connection to orders: orders refuses its client certificate at the handshake.
        using (var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout })
        using (var response = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/1"))
        {
            Assert.True((int)response.StatusCode >= 500, $"expected the call to fail, got {(int)response.StatusCode}");
        }
        var metrics = await Mesh.MetricsAsync(ordersSidecar);
        Assert.True(Mesh.Sample(metrics, "ztm_tls_handshake_failures_total", ("direction", "inbound"), ("reason", "Revoked")) >= 1, metrics);

        var (listExit, list, _) = await _mesh.ZtmctlAsync("get", "revocations");
        Assert.Equal(0, listExit);
        Assert.Contains($"serial {serial.TrimStart('0')}", list, StringComparison.Ordinal);
        Assert.Contains("key leaked", list, StringComparison.Ordinal);
        var (_, status, _) = await _mesh.ZtmctlAsync("status", "-o", "json");
        Assert.Equal(1, JsonDocument.Parse(status).RootElement.GetProperty("revocations").GetInt32());

        // Renewal is authenticated by the current certificate; a revoked one is refused.
        using var credential = await WorkloadCredential.Issue(controlPlane, "shop", "reports");
        Assert.Equal(0, (await _mesh.ZtmctlAsync("revoke", "--serial", credential.SerialNumber)).ExitCode);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var refused = await Assert.ThrowsAsync<RpcException>(() => WorkloadCredential.RenewAsync(controlPlane, credential, WorkloadCredential.Csr(key)));
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("renewal refused", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("is revoked", refused.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_revoked_identity_is_refused_as_a_server_too_and_the_list_survives_a_restart()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, _, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);

        var (exit, stdout, _) = await _mesh.ZtmctlAsync("revoke", "--spiffe-id", DataPlaneFixture.OrdersId);
        Assert.Equal(0, exit);
        Assert.Contains($"revoked {DataPlaneFixture.OrdersId} issued before ", stdout, StringComparison.Ordinal);
        var version = stdout.Split('\n').Single(l => l.StartsWith("config version ", StringComparison.Ordinal))["config version ".Length..].Trim();
        await frontend.Process.WaitForLineAsync($"revocations of config {version} applied: 1 in force");

        // The frontend dials orders and refuses its server certificate.
        using (var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout })
        using (var response = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/1"))
        {
            Assert.True((int)response.StatusCode >= 500, $"expected the call to fail, got {(int)response.StatusCode}");
        }
        var metrics = await Mesh.MetricsAsync(frontend);
        Assert.True(Mesh.Sample(metrics, "ztm_tls_handshake_failures_total", ("direction", "outbound"), ("reason", "Revoked")) >= 1, metrics);

        // Restart on the same data directory: the revocation is still in force, at the same version.
        await controlPlane.Process.StopAsync();
        var restarted = await _mesh.StartControlPlaneAsync(dataDir: controlPlane.DataDir);
        await restarted.Process.WaitForLineAsync("1 revocation(s)");
        var (listExit, list, _) = await _mesh.ZtmctlAsync("get", "revocations", "-o", "json");
        Assert.Equal(0, listExit);
        var listed = JsonDocument.Parse(list).RootElement;
        Assert.Equal(version, listed.GetProperty("version").GetString());
        Assert.Equal(DataPlaneFixture.OrdersId, Assert.Single(listed.GetProperty("revocations").EnumerateArray().ToList()).GetProperty("spiffeId").GetString());
    }

    [Fact]
    public async Task A_revoked_identity_is_refused_on_every_workload_call_its_open_streams_end_and_its_sidecar_is_not_ready()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (_, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        // A second holder of the frontend's identity, with its own config stream open before the revocation.
        using var credential = await WorkloadCredential.Issue(controlPlane, "shop", "frontend");
        using var channel = controlPlane.Channel(credential);
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        using var stream = new MeshConfig.MeshConfigClient(channel).Stream(cancellationToken: timeout.Token);
        await stream.RequestStream.WriteAsync(new ConfigRequest());
        Assert.True(await stream.ResponseStream.MoveNext(timeout.Token));

        var (exit, _, _) = await _mesh.ZtmctlAsync("revoke", "--spiffe-id", DataPlaneFixture.FrontendId, "--reason", "compromised");
        Assert.Equal(0, exit);

        // The open stream gets the version that carries the revocation, then ends: PERMISSION_DENIED naming it.
        var ended = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await stream.ResponseStream.MoveNext(timeout.Token))
            {
            }
        });
        AssertRevoked(ended);

        // Every workload call of that identity is refused the same way.
        var registry = new Registry.RegistryClient(channel);
        AssertRevoked(await Assert.ThrowsAsync<RpcException>(async () => await registry.ResolveAsync(new ResolveRequest { Service = "orders" })));
        AssertRevoked(await Assert.ThrowsAsync<RpcException>(async () => await registry.RegisterAsync(new RegisterRequest
        {
            Endpoint = new ServiceEndpoint { InboundAddress = "127.0.0.1:15006" },
        })));
        AssertRevoked(await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var reopened = new MeshConfig.MeshConfigClient(channel).Stream(cancellationToken: timeout.Token);
            await reopened.ResponseStream.MoveNext(timeout.Token);
        }));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var renewal = await Assert.ThrowsAsync<RpcException>(() => WorkloadCredential.RenewAsync(controlPlane, credential, WorkloadCredential.Csr(key)));
        Assert.Equal(StatusCode.PermissionDenied, renewal.StatusCode);

        // The revoked sidecar's stream was ended the same way: it says it is not ready, and why. Orders is unaffected.
        await frontend.Process.WaitForLineAsync("config stream to the control plane broke (PermissionDenied: ");
        var (status, body) = await frontend.ReadyAsync();
        Assert.Equal(503, status);
        Assert.StartsWith("not ready: certificate revoked: ", body, StringComparison.Ordinal);
        Assert.Contains("compromised", body, StringComparison.Ordinal);
        Assert.Equal((200, "ready\n"), await ordersSidecar.ReadyAsync());
    }

    private static void AssertRevoked(RpcException e)
    {
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Contains($"of '{DataPlaneFixture.FrontendId}' is revoked ({DataPlaneFixture.FrontendId} issued before ", e.Status.Detail, StringComparison.Ordinal);
        Assert.Contains(": compromised)", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bad_input_and_callers_other_than_the_operator_are_refused_with_a_clear_line()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();

        await AssertRefusedAsync(1, "'xyz' is not a certificate serial", "(InvalidArgument)", "revoke", "--serial", "xyz");
        await AssertRefusedAsync(1, "is not a SPIFFE ID", "(InvalidArgument)", "revoke", "--spiffe-id", "orders.shop");
        await AssertRefusedAsync(1, "is not a workload identity", "(InvalidArgument)", "revoke", "--spiffe-id", "spiffe://cluster.local/ztm/operator");
        await AssertRefusedAsync(1, "is not in this mesh's trust domain", "(InvalidArgument)", "revoke", "--spiffe-id", "spiffe://evil.example/ns/shop/sa/orders");
        await AssertRefusedAsync(2, "revoke needs --serial", null, "revoke");

        // A workload is not the operator.
        using var workload = await WorkloadCredential.Issue(controlPlane, "shop", "orders");
        using var channel = controlPlane.Channel(workload);
        var refused = await Assert.ThrowsAsync<RpcException>(async () =>
            await new IdentityAdmin.IdentityAdminClient(channel).RevokeAsync(new RevokeRequest { SpiffeId = DataPlaneFixture.FrontendId }));
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("is not the operator", refused.Status.Detail, StringComparison.Ordinal);

        // Nothing was revoked by any of it.
        var (_, list, _) = await _mesh.ZtmctlAsync("get", "revocations", "-o", "json");
        Assert.Empty(JsonDocument.Parse(list).RootElement.GetProperty("revocations").EnumerateArray());
    }

    private async Task AssertRefusedAsync(int expectedExit, string message, string? code, params string[] args)
    {
        var (exit, stdout, stderr) = await _mesh.ZtmctlAsync(args);
        Assert.Equal(expectedExit, exit);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("ztmctl: ", line, StringComparison.Ordinal);
        Assert.Contains(message, line, StringComparison.Ordinal);
        if (code is not null)
        {
            Assert.Contains(code, line, StringComparison.Ordinal);
        }
    }
}
