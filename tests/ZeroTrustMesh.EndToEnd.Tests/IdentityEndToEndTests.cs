using System.Security.Cryptography.X509Certificates;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>The quickstart path: control plane, a token from ztmctl, a sidecar that obtains its identity.</summary>
public sealed class IdentityEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task Sidecar_obtains_the_identity_its_join_token_names_and_becomes_ready()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (exit, token, _) = await _mesh.ZtmctlAsync("token", "create", "--namespace", "shop", "--service-account", "orders", "--ttl", "10m", "-o", "token");
        Assert.Equal(0, exit);

        var sidecar = await _mesh.StartSidecarAsync(controlPlane, token.Trim());
        var identity = await sidecar.WaitForIdentityAsync();

        Assert.Equal("spiffe://cluster.local/ns/shop/sa/orders", identity.GetProperty("spiffeId").GetString());
        Assert.Matches("^[0-9a-f]{32}$", identity.GetProperty("serial").GetString());
        var notAfter = identity.GetProperty("notAfter").GetDateTimeOffset();
        Assert.InRange(notAfter - DateTimeOffset.UtcNow, TimeSpan.FromMinutes(55), TimeSpan.FromMinutes(61));
        // Ready takes the first config as well as the certificate: on a loaded machine it can follow the identity by a moment.
        await sidecar.Process.WaitForLineAsync(l => l.Contains("] config ", StringComparison.Ordinal) && l.Contains(" applied: ", StringComparison.Ordinal), "first config applied");
        Assert.Equal((200, "ready\n"), await sidecar.ReadyAsync());
        await controlPlane.Process.WaitForLineAsync(l => l.Contains("svid issued spiffe_id=spiffe://cluster.local/ns/shop/sa/orders", StringComparison.Ordinal) && l.Contains("via=join_token", StringComparison.Ordinal), "issuance log line");
    }

    [Fact]
    public async Task Ztmctl_finds_the_control_plane_with_no_flags_and_other_callers_are_refused()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();

        var (exit, stdout, _) = await _mesh.ZtmctlAsync("token", "create", "-n", "shop", "-s", "orders", "-o", "json");
        Assert.Equal(0, exit);
        Assert.Contains("\"spiffeId\":\"spiffe://cluster.local/ns/shop/sa/orders\"", stdout, StringComparison.Ordinal);

        // The credential files are for the operator only.
        foreach (var file in new[] { "operator/operator.key", "operator/operator.crt", "ca/ca.key" })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(controlPlane.DataDir, file)));
        }

        // A caller with no client certificate is refused.
        using (var anonymous = controlPlane.Channel())
        {
            var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => new Proto.V1.IdentityAdmin.IdentityAdminClient(anonymous)
                .CreateJoinTokenAsync(new Proto.V1.CreateJoinTokenRequest { Namespace = "shop", ServiceAccount = "orders" }).ResponseAsync);
            Assert.Equal(Grpc.Core.StatusCode.Unauthenticated, e.StatusCode);
        }

        // A workload of the mesh (valid SVID, but not the operator) is refused too.
        var sidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync());
        await sidecar.WaitForIdentityAsync();
        var workload = WorkloadCredential.Issue(controlPlane, "shop", "payments");
        using (var asWorkload = controlPlane.Channel(await workload))
        {
            var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => new Proto.V1.IdentityAdmin.IdentityAdminClient(asWorkload)
                .CreateJoinTokenAsync(new Proto.V1.CreateJoinTokenRequest { Namespace = "shop", ServiceAccount = "orders" }).ResponseAsync);
            Assert.Equal(Grpc.Core.StatusCode.PermissionDenied, e.StatusCode);
            Assert.Contains("is not the operator", e.Status.Detail, StringComparison.Ordinal);
        }
    }
}
