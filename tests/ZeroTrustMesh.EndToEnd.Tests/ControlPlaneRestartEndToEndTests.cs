using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// The control plane's state across a restart and a renewal, through real processes: requests keep flowing while it
/// restarts (the registry comes back with the endpoints it knew), and <c>ztmctl status</c> shows the certificate a
/// sidecar holds now, not the one its config stream was opened with.
/// </summary>
public sealed class ControlPlaneRestartEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    // Sidecars re-register every 10 s and refresh a resolved destination once it is 5 s old: before the registry was
    // kept, a restarted control plane answered "no endpoints" for up to 10 s. The load runs that long past the restart.
    private static readonly TimeSpan AfterRestart = TimeSpan.FromSeconds(10 + 5);

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task Requests_keep_flowing_while_the_control_plane_restarts_on_the_same_data_directory_and_port()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);

        var failures = new ConcurrentQueue<string>();
        var served = 0;
        using var stop = new CancellationTokenSource();
        async Task LoadAsync(int worker)
        {
            using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
            using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
            for (var n = 0; await pace.WaitForNextTickAsync(CancellationToken.None) && !stop.IsCancellationRequested; n++)
            {
                try
                {
                    using var response = await http.GetAsync($"http://orders:{orders.HttpPort}/orders/{worker}-{n}");
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        Interlocked.Increment(ref served);
                    }
                    else
                    {
                        failures.Enqueue($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                    }
                }
                catch (HttpRequestException e)
                {
                    failures.Enqueue($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {e.Message}");
                }
            }
        }
        var load = Task.WhenAll(Enumerable.Range(0, 4).Select(LoadAsync)); // about 200 requests a second

        await frontend.Process.WaitForLineAsync("\"status\":200"); // flowing
        var mark = ordersSidecar.Process.LineCount;
        await controlPlane.Process.StopAsync(); // graceful: SIGTERM
        // Back up right after orders' heartbeat failed, so that its next one is a whole interval away.
        await ordersSidecar.Process.WaitForLineAsync(l => l.Contains("registry register failed", StringComparison.Ordinal), "a failed heartbeat", after: mark);
        var restarted = await _mesh.StartControlPlaneAsync(name: "controlplane-2", dataDir: controlPlane.DataDir, port: controlPlane.Address.Port);

        // What the restarted registry answers before orders heartbeats again.
        ResolveResponse resolvedAtStart;
        using (var reports = await WorkloadCredential.Issue(restarted, "shop", "reports"))
        using (var channel = restarted.Channel(reports))
        {
            resolvedAtStart = await new Registry.RegistryClient(channel).ResolveAsync(new ResolveRequest { Service = "orders" });
        }
        await Task.Delay(AfterRestart); // the window the load runs through: a measurement, not a wait for an event
        await stop.CancelAsync();
        await load;

        Assert.True(failures.IsEmpty, $"{failures.Count} of {failures.Count + served} requests failed across the restart:\n{string.Join('\n', failures.Take(20))}");
        Assert.True(served > 100, $"only {served} requests were made");
        Assert.Contains(resolvedAtStart.Endpoints, e => e.SpiffeId == DataPlaneFixture.OrdersId);
    }

    [Fact]
    public async Task Status_shows_the_certificate_a_sidecar_holds_after_it_renewed()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync(extraArgs: ["--svid-ttl", "1m"]);
        var sidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync());
        await sidecar.WaitForPolicyAsync("v0");
        await sidecar.Process.WaitForLineAsync("svid renewed ", TimeSpan.FromSeconds(75));

        var held = (await sidecar.ConfigDumpAsync()).GetProperty("identity");
        var (exit, status, _) = await _mesh.ZtmctlAsync("status", "-o", "json");
        Assert.Equal(0, exit);
        var shown = Assert.Single(JsonDocument.Parse(status).RootElement.GetProperty("sidecars").EnumerateArray().ToList());
        Assert.Equal(held.GetProperty("serial").GetString()!.TrimStart('0'), shown.GetProperty("serial").GetString());
        Assert.Equal(held.GetProperty("notAfter").GetDateTimeOffset(), shown.GetProperty("certificateExpiresAt").GetDateTimeOffset());
        Assert.True(shown.GetProperty("connected").GetBoolean());
    }
}
