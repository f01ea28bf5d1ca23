using System.Diagnostics;
using Xunit.Abstractions;
using ZeroTrustMesh.Pods.Tests.Infrastructure;

namespace ZeroTrustMesh.Pods.Tests;

/// <summary>
/// What kubelet sees of a meshed pod: probes through the sidecar's pod-IP health port (needs the sidecar's
/// <c>--health-port</c> and <c>ZTM_APP_PROBES</c>: skipped until it has them), and a pod stopped with SIGTERM.
/// </summary>
[Collection(PodsCollection.Name)]
public sealed class ProbeAndDrainTests(PodMesh mesh, ITestOutputHelper output)
{
    // Istio's ISTIO_KUBE_APP_PROBERS shape, as the injector writes it (contract: "Sidecar flags and environment").
    private const string Probes = """
        {"/app-health/web/livez":{"httpGet":{"path":"/status/200?from=kubelet","port":8080,"scheme":"HTTP","httpHeaders":[{"name":"x-probe","value":"kubelet"}]},"timeoutSeconds":1},
         "/app-health/web/readyz":{"httpGet":{"path":"/status/503","port":8080,"scheme":"HTTP"},"timeoutSeconds":1},
         "/app-health/web/startupz":{"tcpSocket":{"port":8080},"timeoutSeconds":1},
         "/app-health/db/livez":{"tcpSocket":{"port":9999},"timeoutSeconds":1}}
        """;

    [PodFact]
    public async Task Kubelet_probes_from_outside_the_pod_reach_the_app_through_the_health_port()
    {
        var pod = await mesh.StartPodAsync("p", new PodSettings
        {
            SidecarArgs = ["--health-port", "15021"],
            SidecarEnvironment = new Dictionary<string, string> { ["ZTM_APP_PROBES"] = Probes.ReplaceLineEndings("") },
        });
        async Task<CurlResult> Probe(string path)
        {
            var result = await Pod.Curl(mesh.Outsider, $"http://{pod.Ip}:15021{path}");
            output.WriteLine($"{path}: {result}");
            return result;
        }

        Assert.Equal("200", (await Probe("/healthz/ready")).Status);
        Assert.Equal("200", (await Probe("/app-health/web/livez")).Status);       // httpGet, answered 200 by the app
        Assert.True(int.Parse((await Probe("/app-health/web/readyz")).Status, System.Globalization.CultureInfo.InvariantCulture) >= 400); // the app answered 503
        Assert.Equal("200", (await Probe("/app-health/web/startupz")).Status);    // tcpSocket to the app's port
        Assert.True(int.Parse((await Probe("/app-health/db/livez")).Status, System.Globalization.CultureInfo.InvariantCulture) >= 400);   // nothing listens on 9999
        Assert.True(int.Parse((await Probe("/app-health/none/livez")).Status, System.Globalization.CultureInfo.InvariantCulture) >= 400); // no such probe

        // Without the rewrite, kubelet's own probe of the app port is captured into the mTLS-only sidecar.
        Assert.NotEqual("200", (await Pod.Curl(mesh.Outsider, $"http://{pod.Ip}:{Pod.AppPort}/status/200")).Status);
        // /metrics on the health port, for Prometheus.
        Assert.Contains("ztm_", (await Probe("/metrics")).Body, StringComparison.Ordinal);
    }

    [PodFact]
    public async Task Stopping_a_pod_drains_in_flight_requests_finish_new_ones_are_refused_and_the_sidecar_exits_0()
    {
        var d = await mesh.StartPodAsync("d");

        // A request that takes 4 s; it has reached d's app once d's sidecar holds a connection to the app's port (the
        // pod's first request, so no pooled connection to the app is there before it).
        var inFlight = mesh.A.CurlAsync($"http://{d.ServiceAddress}:{Pod.AppPort}/slow/4000", "-m", "20");
        await WaitUntilAsync(async () => await ConnectionsToAppAsync(d) > 0, "the slow request reaching d's app");

        // SIGTERM, as kubelet stops a pod, and nothing else (no SIGKILL after a grace period).
        await SignalAsync(d.Sidecar.Id, "TERM");
        var exited = d.Sidecar.GetExitCodeAsync();
        // Readiness read inside the pod on the admin port, which every sidecar has: 503 while draining, or gone.
        await WaitUntilAsync(async () => (await d.CurlAsync("http://127.0.0.1:15020/healthz/ready")).Status != "200", "d's readiness going 503");

        var refused = await mesh.A.CurlAsync($"http://{d.ServiceAddress}:{Pod.AppPort}/allowed/new");
        output.WriteLine($"new request while draining: {refused}");
        Assert.NotEqual("200", refused.Status);
        Assert.DoesNotContain("\"app\":\"d\"", refused.Body, StringComparison.Ordinal);

        var finished = await inFlight;
        output.WriteLine($"in-flight request: {finished}");
        Assert.Equal("200", finished.Status);
        Assert.Contains("\"app\":\"d\"", finished.Body, StringComparison.Ordinal);
        Assert.Equal(0, await exited.WaitAsync(PodMesh.Timeout));
    }

    private static async Task SignalAsync(string container, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("docker", ["kill", "--signal", signal, container]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        await kill.WaitForExitAsync().WaitAsync(PodMesh.Timeout);
        Assert.True(kill.ExitCode == 0, $"docker kill --signal {signal}: {await kill.StandardError.ReadToEndAsync()}");
    }

    /// <summary>Established TCP connections to the app's port in the pod's network namespace (its /proc/net/tcp, read by curl).</summary>
    private static async Task<int> ConnectionsToAppAsync(Pod pod)
    {
        var table = (await pod.CurlAsync("file:///proc/net/tcp")).Body;
        var port = ":" + Pod.AppPort.ToString("X4", System.Globalization.CultureInfo.InvariantCulture);
        return table.Split('\n').Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Count(f => f.Length > 3 && f[1].EndsWith(port, StringComparison.Ordinal) && f[3] == "01");
    }

    /// <summary>Waits for a condition the sidecar's endpoints report, checking every 100 ms, failing after the mesh timeout.</summary>
    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > PodMesh.Timeout)
            {
                throw new TimeoutException($"waited {PodMesh.Timeout} for {what}");
            }
            await Task.Delay(100);
        }
    }
}
