using Xunit.Abstractions;
using ZeroTrustMesh.Pods.Tests.Infrastructure;

namespace ZeroTrustMesh.Pods.Tests;

/// <summary>Pods a and b (see <see cref="PodMesh"/>): what crosses between pods, and what cannot.</summary>
[Collection(PodsCollection.Name)]
public sealed class PodTrafficTests(PodMesh mesh, ITestOutputHelper output)
{
    [PodFact]
    public async Task A_call_to_b_service_address_is_captured_carried_over_mtls_and_b_sees_a_identity_and_the_policy_decides()
    {
        // The app dials b's service address in plain HTTP, as if there were no mesh, and even claims another identity.
        var allowed = await mesh.A.CurlAsync($"http://{mesh.B.ServiceAddress}:{Pod.AppPort}/allowed/orders?id=7",
            "-H", "x-ztm-client-identity: spiffe://cluster.local/ns/shop/sa/admin");
        output.WriteLine($"allowed: {allowed}");

        Assert.Equal("200", allowed.Status);
        Assert.Contains("\"app\":\"b\"", allowed.Body, StringComparison.Ordinal);
        Assert.Contains($"\"caller\":\"{mesh.A.Identity}\"", allowed.Body, StringComparison.Ordinal);
        Assert.DoesNotContain("sa/admin", allowed.Body, StringComparison.Ordinal);

        var denied = await mesh.A.CurlAsync($"http://{mesh.B.ServiceAddress}:{Pod.AppPort}/allowed/secret");
        output.WriteLine($"denied: {denied}");
        Assert.Equal("403", denied.Status);
        Assert.Contains("denied by DENY policy 'shop/b-no-secrets' rule 0", denied.Body, StringComparison.Ordinal);

        var notAllowed = await mesh.A.CurlAsync($"http://{mesh.B.ServiceAddress}:{Pod.AppPort}/elsewhere");
        output.WriteLine($"not allowed: {notAllowed}");
        Assert.Equal("403", notAllowed.Status);
        Assert.Contains("no ALLOW policy matched", notAllowed.Body, StringComparison.Ordinal);

        // b's sidecar took the call over mTLS from a's identity (its access log says so); b's app saw no plaintext caller.
        var (sidecarLog, _) = await mesh.B.Sidecar.GetLogsAsync();
        Assert.Contains(sidecarLog.Split('\n'), l => l.Contains("\"log\":\"access\"", StringComparison.Ordinal)
            && l.Contains(mesh.A.Identity, StringComparison.Ordinal) && l.Contains("/allowed/orders", StringComparison.Ordinal));
        var metrics = await mesh.B.CurlAsync("http://127.0.0.1:15020/metrics");
        Assert.Matches(@"ztm_inbound_connections_total\{security=""mtls""\} [1-9]", metrics.Body);
    }

    [PodFact]
    public async Task An_app_connecting_straight_to_another_pods_app_port_is_refused()
    {
        // b's app does listen on every address of its pod: from inside the pod (loopback, not captured) it answers.
        var inside = await mesh.B.CurlAsync($"http://127.0.0.1:{Pod.AppPort}/allowed/x");
        Assert.Equal("200", inside.Status);

        // From outside the mesh, straight to b's pod IP and app port: captured into b's sidecar, which speaks only mTLS.
        var fromOutside = await Pod.Curl(mesh.Outsider, $"http://{mesh.B.Ip}:{Pod.AppPort}/allowed/x");
        output.WriteLine($"outsider -> b:{Pod.AppPort}: {fromOutside}");
        Assert.NotEqual("200", fromOutside.Status);
        Assert.DoesNotContain("\"app\":\"b\"", fromOutside.Body, StringComparison.Ordinal);

        // From a meshed app, to the pod IP instead of the service address: no way around either sidecar.
        var fromA = await mesh.A.CurlAsync($"http://{mesh.B.Ip}:{Pod.AppPort}/allowed/x");
        output.WriteLine($"a -> b:{Pod.AppPort}: {fromA}");
        Assert.NotEqual("200", fromA.Status);
        Assert.DoesNotContain("\"app\":\"b\"", fromA.Body, StringComparison.Ordinal);
    }

    [PodFact]
    public async Task A_pod_whose_sidecar_is_not_ready_has_no_traffic_in_or_out()
    {
        // The sidecar of c cannot reach a control plane (nothing listens there): no certificate, never ready. Its app is
        // started anyway, so that there is something to reach.
        var c = await mesh.StartPodAsync("c", new PodSettings { ControlPlane = $"https://{mesh.ControlPlane.IpAddress}:1", WaitForSidecar = false });
        var ready = await c.CurlAsync("http://127.0.0.1:15020/healthz/ready");
        output.WriteLine($"c ready: {ready}");
        Assert.NotEqual("200", ready.Status);
        Assert.Equal("200", (await c.CurlAsync($"http://127.0.0.1:{Pod.AppPort}/x")).Status); // the app is up

        // In: neither from outside the mesh nor from a meshed pod does anything reach c's app.
        var fromOutside = await Pod.Curl(mesh.Outsider, $"http://{c.Ip}:{Pod.AppPort}/x");
        output.WriteLine($"outsider -> c: {fromOutside}");
        Assert.DoesNotContain("\"app\":\"c\"", fromOutside.Body, StringComparison.Ordinal);
        Assert.NotEqual("200", fromOutside.Status);

        // Out: c's app reaches neither a meshed service nor anything outside the mesh (b's app, the control plane).
        var toB = await c.CurlAsync($"http://{mesh.B.ServiceAddress}:{Pod.AppPort}/allowed/x");
        output.WriteLine($"c -> b service: {toB}");
        Assert.NotEqual("200", toB.Status);
        Assert.DoesNotContain("\"app\":\"b\"", toB.Body, StringComparison.Ordinal);
        var toPlain = await c.CurlAsync($"http://{mesh.B.Ip}:{Pod.AppPort}/allowed/x");
        Assert.NotEqual("200", toPlain.Status);
        var toControlPlane = await c.CurlAsync($"https://{mesh.ControlPlane.IpAddress}:15012/", "-k");
        output.WriteLine($"c -> control plane: {toControlPlane}");
        Assert.Equal("000", toControlPlane.Status);

        // What the same call does from a ready pod: the refusal above is c's sidecar failing closed, not the network.
        Assert.Equal("200", (await mesh.A.CurlAsync($"http://{mesh.B.ServiceAddress}:{Pod.AppPort}/allowed/x")).Status);
    }
}
