using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// A CA root rotation, one command, with real processes and one-minute SVIDs under load: HTTP requests on a kept-alive
/// connection and a new mTLS connection (opaque TCP) for every echo, from before the rotation starts until after the old
/// root is gone. A sidecar that is down with a live certificate holds activation up and is named until it comes back.
/// </summary>
public sealed class CaRotationEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string BillingId = "spiffe://cluster.local/ns/shop/sa/billing";

    // Activation + the one-minute SVID lifetime + the skew, with room for a loaded machine.
    private static readonly TimeSpan RotationWithin = TimeSpan.FromMinutes(3);

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task Rotate_goes_through_all_three_phases_under_load_with_no_failed_request_or_handshake_and_the_old_root_leaves_every_bundle()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync(extraArgs:
            ["--svid-ttl", "1m", "--ca-rotation-skew", "2s", "--ca-rotation-poll", "0.5s", "--ca-rotation-reconnect-grace", "1s"]);
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        var oldRoot = Assert.Single(controlPlane.Bundle.Roots);

        // billing connects, then goes down holding a live certificate.
        var billing = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "billing"), "sidecar-billing");
        await billing.WaitForIdentityAsync();
        await billing.Process.WaitForLineAsync(l => l.Contains("config v", StringComparison.Ordinal) && l.Contains(" applied", StringComparison.Ordinal), "billing's first config");
        var closed = controlPlane.Process.WaitForLineAsync($"config stream closed spiffe_id={BillingId}");
        billing.Process.Kill();
        await closed;

        using var load = new Load(orders, frontend, output);
        await load.Running.WaitAsync(Mesh.Timeout);

        var rotate = await _mesh.ZtmctlAsync("ca", "rotate");
        Assert.Equal(0, rotate.ExitCode);
        Assert.StartsWith("CA rotation started: root ", rotate.Stdout, StringComparison.Ordinal);
        var again = await _mesh.ZtmctlAsync("ca", "rotate");
        Assert.Equal(1, again.ExitCode);
        Assert.StartsWith("ztmctl: a rotation is already running (phase prepared since ", again.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, again.Stderr.Count(c => c == '\n'));

        // Activation waits for billing, and ca status says so.
        await controlPlane.Process.WaitForLineAsync(l => l.Contains("ca rotation prepared waits: ", StringComparison.Ordinal) && l.Contains(BillingId, StringComparison.Ordinal),
            "activation blocked by billing");
        var blocked = await StatusAsync();
        Assert.Equal("prepared", blocked.GetProperty("phase").GetString());
        Assert.Contains(blocked.GetProperty("blockedBy").EnumerateArray(), b => b.GetString()!.StartsWith($"{BillingId} (not connected since ", StringComparison.Ordinal));
        var table = await _mesh.ZtmctlAsync("ca", "status");
        Assert.Equal(0, table.ExitCode);
        Assert.Contains($"blocked by:    {BillingId} (not connected", table.Stdout, StringComparison.Ordinal);
        Assert.Contains("phase:         prepared", table.Stdout, StringComparison.Ordinal);
        Assert.Equal(0, controlPlane.Process.CountLines("ca rotation activate "));

        // billing comes back (a new join token: its key never left the process that died) and follows the new bundle.
        var activated = controlPlane.Process.WaitForLineAsync("ca rotation activate ", RotationWithin);
        var billingAgain = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync("shop", "billing"), "sidecar-billing-2");
        await activated;
        var active = await StatusAsync();
        Assert.Equal("active", active.GetProperty("phase").GetString());
        Assert.True(active.TryGetProperty("nextStepAt", out _), active.ToString());

        await controlPlane.Process.WaitForLineAsync("ca rotation retire ", RotationWithin);
        await controlPlane.Process.WaitForLineAsync("ca rotation done ", RotationWithin);
        var newRoot = Assert.Single(controlPlane.Bundle.Roots);
        Assert.NotEqual(oldRoot.Thumbprint, newRoot.Thumbprint);

        // Every sidecar has followed the last bundle (done waits for that); a few more requests on the new root alone.
        await load.StopAfterAsync(rounds: 20);
        output.WriteLine($"{load.Requests} HTTP requests, {load.Connections} new mTLS connections (TCP echo) during the rotation");
        Assert.Equal(0, load.Failures);
        Assert.True(load.Requests > 100 && load.Connections > 20, $"too little load: {load.Requests} requests, {load.Connections} connections");

        foreach (var sidecar in new[] { ordersSidecar, frontend, billingAgain })
        {
            var identity = (await sidecar.ConfigDumpAsync()).GetProperty("identity");
            Assert.Equal([newRoot.Thumbprint], identity.GetProperty("trustBundleRoots").EnumerateArray().Select(r => r.GetString()));
            Assert.Equal(3ul, identity.GetProperty("trustBundleSequence").GetUInt64());
            var metrics = await Mesh.MetricsAsync(sidecar);
            Assert.Equal(0, Mesh.Sample(metrics, "ztm_tls_handshake_failures_total"));
        }

        var done = await StatusAsync();
        Assert.Equal("none", done.GetProperty("phase").GetString());
        var root = Assert.Single(done.GetProperty("roots").EnumerateArray());
        Assert.Equal("current", root.GetProperty("role").GetString());
        Assert.All(done.GetProperty("sidecars").EnumerateArray().Where(s => s.GetProperty("connected").GetBoolean()),
            s => Assert.Equal("current", s.GetProperty("certificateRoot").GetString())); // renewed onto the new root
        using var http = new HttpClient();
        var controlPlaneMetrics = await http.GetStringAsync(controlPlane.Metrics);
        Assert.Equal(1, Mesh.Sample(controlPlaneMetrics, "ztm_ca_rotation_phase", ("phase", "none")));
        Assert.Equal(3, Mesh.Sample(controlPlaneMetrics, "ztm_ca_trust_bundle_sequence"));
    }

    private async Task<JsonElement> StatusAsync()
    {
        var status = await _mesh.ZtmctlAsync("ca", "status", "-o", "json");
        Assert.Equal(0, status.ExitCode);
        return JsonDocument.Parse(status.Stdout).RootElement.Clone();
    }

    /// <summary>
    /// Two paced workers through the frontend sidecar to orders until stopped: HTTP GETs (50/s) on one kept-alive
    /// connection, and TCP echoes (10/s) each on a new connection (a new mTLS handshake between the sidecars every time). Every failure is counted.
    /// </summary>
    private sealed class Load : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly HttpClient _http;
        private readonly Task _workers;
        private readonly TaskCompletionSource _running = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly ITestOutputHelper _output;
        private int _stopAfter = int.MaxValue;
        private int _requests;
        private int _connections;
        private int _failures;

        public Load(DemoApp orders, Sidecar frontend, ITestOutputHelper output)
        {
            _output = output;
            _http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
            _workers = Task.WhenAll(
                Task.Run(() => HttpAsync(orders)),
                Task.Run(() => TcpAsync(orders, frontend)));
        }

        public Task Running => _running.Task;

        public int Requests => _requests;

        public int Connections => _connections;

        public int Failures => _failures;

        /// <summary>Lets each worker run <paramref name="rounds"/> more, then waits for both.</summary>
        public async Task StopAfterAsync(int rounds)
        {
            Volatile.Write(ref _stopAfter, Math.Min(_requests, _connections) + rounds);
            await _workers.WaitAsync(TimeSpan.FromMinutes(1));
        }

        private bool Go(int done) => done < Volatile.Read(ref _stopAfter) && !_stop.IsCancellationRequested;

        private async Task HttpAsync(DemoApp orders)
        {
            using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
            while (Go(_requests) && await pace.WaitForNextTickAsync())
            {
                try
                {
                    using var response = await _http.GetAsync($"http://orders:{orders.HttpPort}/rotation/{_requests}");
                    if (response.StatusCode != HttpStatusCode.OK)
                    {
                        Fail($"HTTP {(int)response.StatusCode}");
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                {
                    Fail($"HTTP {e.GetType().Name}: {e.Message}");
                }
                if (Interlocked.Increment(ref _requests) == 5)
                {
                    _running.TrySetResult();
                }
            }
        }

        private async Task TcpAsync(DemoApp orders, Sidecar frontend)
        {
            var message = Encoding.ASCII.GetBytes("rotation\n");
            var echo = new byte[message.Length];
            using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
            while (Go(_connections) && await pace.WaitForNextTickAsync())
            {
                try
                {
                    using var timeout = new CancellationTokenSource(Mesh.Timeout);
                    using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    await socket.ConnectAsync(frontend.Outbound, timeout.Token);
                    var head = await DataPlaneTests.ConnectAsync(socket, $"orders.shop:{orders.TcpPort}", timeout.Token);
                    if (!head.StartsWith("HTTP/1.1 200 ", StringComparison.Ordinal))
                    {
                        Fail($"CONNECT answered {head.Split('\r')[0]}");
                    }
                    else
                    {
                        await socket.SendAsync(message, SocketFlags.None, timeout.Token);
                        var read = 0;
                        while (read < echo.Length)
                        {
                            var n = await socket.ReceiveAsync(echo.AsMemory(read), SocketFlags.None, timeout.Token);
                            if (n == 0)
                            {
                                break;
                            }
                            read += n;
                        }
                        if (!echo.AsSpan(0, read).SequenceEqual(message))
                        {
                            Fail($"TCP echo returned {read} of {message.Length} bytes");
                        }
                    }
                }
                catch (Exception e) when (e is SocketException or OperationCanceledException or IOException)
                {
                    Fail($"TCP {e.GetType().Name}: {e.Message}");
                }
                Interlocked.Increment(ref _connections);
            }
        }

        private void Fail(string what)
        {
            Interlocked.Increment(ref _failures);
            _output.WriteLine($"load failure at {DateTimeOffset.UtcNow:HH:mm:ss.fff}: {what}");
        }

        public void Dispose()
        {
            _stop.Cancel();
            _http.Dispose();
            _stop.Dispose();
        }
    }
}
