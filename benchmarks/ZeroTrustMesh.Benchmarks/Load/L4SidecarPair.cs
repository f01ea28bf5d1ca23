using System.Globalization;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// The sidecar pair in L4 mode (issue 20 §3, target <c>ztm-sidecar-pair-l4</c>): its own control plane with
/// <c>--l4-mode on</c> and a policy that needs only the caller's identity, so the app port is L4; the demo app, the
/// orders sidecar (registered under the namespace's service address) and the frontend sidecar, all inside one
/// <see cref="CaptureNamespace"/>, whose nat rule sends the client's connections to the service address into the
/// frontend's outbound port. L4 needs the connection before any HTTP, which only capture (or CONNECT) gives; the client
/// (wrk, or the in-process client with sockets of the namespace) therefore dials the service address from inside.
/// </summary>
internal sealed class L4SidecarPair : IAsyncDisposable
{
    public const string Description =
        "client in a network namespace → iptables capture → frontend sidecar outbound → mTLS, bytes (ztm-tcp/1) → orders sidecar inbound (L4 port: authorized once per connection, nothing parsed) → demo app; control plane with --l4-mode on";

    /// <summary>Why the phases that need more than one HTTP/1.1 port are not run against this target.</summary>
    public const string NotServed = "the L4 target is measured for HTTP/1.1 capacity, the fixed rate and idle memory only";

    private readonly List<LoadProcess> _processes = [];

    private L4SidecarPair(CaptureNamespace netns, ControlPlaneProcess controlPlane)
    {
        Namespace = netns;
        ControlPlane = controlPlane;
    }

    public CaptureNamespace Namespace { get; }

    public ControlPlaneProcess ControlPlane { get; }

    public LoadProcess Frontend { get; private set; } = null!;

    public LoadProcess Orders { get; private set; } = null!;

    /// <summary>The service address and the app's port, as the client dials them: captured, never owned by a process.</summary>
    public Uri Url { get; private set; } = null!;

    public static async Task<L4SidecarPair> StartAsync(DataPlaneSettings settings, IReadOnlyDictionary<string, string> environment,
        IReadOnlyDictionary<string, string> sidecarEnvironment, TimeSpan startTimeout, CancellationToken cancellation)
    {
        var netns = await CaptureNamespace.CreateAsync(cancellation);
        ControlPlaneProcess controlPlane;
        try
        {
            controlPlane = await ControlPlaneProcess.StartAsync(settings.ControlPlane, startTimeout, "ztm-dataplane-l4-", netns, "--l4-mode", "on");
        }
        catch
        {
            await netns.DisposeAsync();
            throw;
        }
        var pair = new L4SidecarPair(netns, controlPlane);
        try
        {
            DataPlaneLoad.Log($"L4: namespace {netns.Name}, control plane pid {controlPlane.Pid} (--l4-mode on), service address {netns.VirtualAddress}");
            var app = pair.Track(LoadProcess.Start("demo-app-l4", settings.DemoApp, ["--name", "orders", "--http-port", "0", "--grpc-port", "0", "--tcp-port", "-1"], environment, netns));
            var appLine = (await app.WaitForLineAsync("http listening on http://", startTimeout)).Line;
            var appPort = new Uri(appLine[appLine.IndexOf("http://", StringComparison.Ordinal)..].Trim()).Port.ToString(CultureInfo.InvariantCulture);
            app.Quiet();

            // Only the caller's identity: nothing on the port needs HTTP, so the control plane makes it L4.
            await MeshSetup.ApplyAsync(controlPlane, "benchmark-l4.yaml", $$"""
                apiVersion: security.ztm.dev/v1
                kind: AuthorizationPolicy
                metadata:
                  name: orders-from-frontend
                  namespace: {{MeshSetup.Namespace}}
                spec:
                  selector:
                    service: orders
                  action: ALLOW
                  rules:
                    - from:
                        - source:
                            principals: ["spiffe://cluster.local/ns/{{MeshSetup.Namespace}}/sa/frontend"]
                """, cancellation);
            pair.Orders = pair.Track(await MeshSetup.StartSidecarAsync(netns, "orders-sidecar-l4", "orders", settings.Sidecar, controlPlane, controlPlane.Root, sidecarEnvironment, cancellation,
                ["--app-port", appPort, "--service-address", netns.VirtualAddress, .. settings.SidecarFlags]));
            await pair.Orders.WaitForLineAsync("registered with the control plane", startTimeout);
            await pair.Orders.WaitForLineAsync("L4 mode: every port L4", startTimeout);
            pair.Orders.Quiet();

            pair.Frontend = pair.Track(await MeshSetup.StartSidecarAsync(netns, "frontend-sidecar-l4", "frontend", settings.Sidecar, controlPlane, controlPlane.Root, sidecarEnvironment, cancellation,
                [.. settings.SidecarFlags]));
            const string OutboundLine = "ztm-sidecar: outbound listening on ";
            var outboundLine = (await pair.Frontend.WaitForLineAsync(OutboundLine, startTimeout)).Line;
            var outboundPort = System.Net.IPEndPoint.Parse(outboundLine[(outboundLine.IndexOf(OutboundLine, StringComparison.Ordinal) + OutboundLine.Length)..].Trim()).Port;
            await pair.Frontend.WaitForLineAsync("registered with the control plane", startTimeout);
            pair.Frontend.Quiet();

            await netns.CaptureAsync(int.Parse(appPort, CultureInfo.InvariantCulture), outboundPort, cancellation);
            pair.Url = new Uri($"http://{netns.VirtualAddress}:{appPort}{DataPlaneLoad.PathAndQuery}");
            return pair;
        }
        catch
        {
            await pair.DisposeAsync();
            throw;
        }
    }

    private LoadProcess Track(LoadProcess process)
    {
        _processes.Add(process);
        DataPlaneLoad.Log($"{process.Name} pid {process.Pid} (in {Namespace.Name})");
        return process;
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _processes.Count - 1; i >= 0; i--)
        {
            await _processes[i].DisposeAsync();
        }
        await ControlPlane.StopAsync(TimeSpan.FromSeconds(10));
        await ControlPlane.DisposeAsync();
        await Namespace.DisposeAsync();
    }
}
