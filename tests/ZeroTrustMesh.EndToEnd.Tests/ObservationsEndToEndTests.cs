using System.Globalization;
using System.Net;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Issue 19, sections 1 and 2 through real processes: the orders sidecar reports every request it serves (allowed and
/// refused) to the control plane on the observation stream; <c>ztmctl api inventory</c> and <c>api diff</c> show what
/// was observed against the declared ApiSpec; a tiny buffer drops and counts.
/// </summary>
public sealed class ObservationsEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task Requests_through_the_mesh_reach_the_control_plane_as_observations()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        await ordersSidecar.Process.WaitForLineAsync("observation stream to the control plane open");
        await controlPlane.Process.WaitForLineAsync("observation stream from spiffe://cluster.local/ns/shop/sa/orders open");
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        for (var i = 0; i < 12; i++)
        {
            using var response = await http.GetAsync(new Uri($"http://orders:{orders.HttpPort}/orders/{i + 100}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Accepted within a second or two (a batch goes out every second); none dropped, no gaps, nothing refused.
        var metrics = await WaitForSampleAsync(controlPlane, "ztm_observations_accepted_total", atLeast: 12);
        Assert.Equal(0, Mesh.Sample(metrics, "ztm_observations_dropped_by_sidecars_total"));
        Assert.Equal(0, Mesh.Sample(metrics, "ztm_observation_sequence_gaps_total"));
        Assert.Equal(0, Mesh.Sample(metrics, "ztm_observation_batches_refused_total"));
        Assert.Equal(0, Mesh.Sample(await Mesh.MetricsAsync(ordersSidecar), "ztm_observations_dropped_total"));
    }

    /// <summary>
    /// The control plane's metrics once <paramref name="name"/> reached <paramref name="atLeast"/>: read until then (the
    /// value only grows), up to <see cref="Mesh.Timeout"/>.
    /// </summary>
    private static async Task<string> WaitForSampleAsync(ControlPlane controlPlane, string name, double atLeast)
    {
        using var http = new HttpClient { Timeout = Mesh.Timeout };
        using var deadline = new CancellationTokenSource(Mesh.Timeout);
        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        string metrics;
        do
        {
            metrics = await http.GetStringAsync(controlPlane.Metrics, deadline.Token);
            if (Mesh.Sample(metrics, name) >= atLeast)
            {
                return metrics;
            }
        }
        while (await tick.WaitForNextTickAsync(deadline.Token));
        throw new TimeoutException($"{name} stayed at {Mesh.Sample(metrics, name).ToString(CultureInfo.InvariantCulture)}, below {atLeast.ToString(CultureInfo.InvariantCulture)}");
    }
}
