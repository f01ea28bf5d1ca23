using Docker.DotNet.Models;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Configurations;
using DotNet.Testcontainers.Containers;

namespace ZeroTrustMesh.Pods.Tests.Infrastructure;

/// <summary>How a pod's sidecar is set up.</summary>
public sealed record PodSettings
{
    /// <summary>The control plane the sidecar dials; null means the mesh's.</summary>
    public string? ControlPlane { get; init; }

    /// <summary>Whether the app starts only once the sidecar is ready (pod order); false starts it at once.</summary>
    public bool WaitForSidecar { get; init; } = true;

    public IReadOnlyList<string> SidecarArgs { get; init; } = [];

    public IReadOnlyDictionary<string, string> SidecarEnvironment { get; init; } = new Dictionary<string, string>();
}

/// <summary>
/// A pod as Kubernetes makes one, from containers sharing one network namespace, started in pod order:
/// <list type="number">
/// <item>the pause container (<c>ztm-test-tools</c>, <c>sleep</c> under docker-init) holds the namespace and the pod IP;
/// it also stands in for the app's client: <see cref="CurlAsync"/> runs curl in it as UID 1000, like the app;</item>
/// <item><c>ztm-init</c>: <c>ztm-sidecar capture</c> as UID 0 with only NET_ADMIN and NET_RAW, read-only root; it must exit 0;</item>
/// <item><c>ztm-sidecar</c> (UID 1337, no capabilities, read-only root), waited on until it holds a certificate and its
/// first config and has registered (unless <see cref="PodSettings.WaitForSidecar"/> is false);</item>
/// <item>the app: <c>ztm-demo-app</c> on 0.0.0.0:8080 (as apps in pods listen), UID 1000, read-only root.</item>
/// </list>
/// The pod's service is <see cref="Name"/> in namespace <c>shop</c>, identity <c>spiffe://cluster.local/ns/shop/sa/NAME</c>,
/// reached at <see cref="ServiceAddress"/>:8080.
/// </summary>
public sealed class Pod(PodMesh mesh, string name, PodSettings settings) : IAsyncDisposable
{
    public const int AppPort = 8080;

    public string Name { get; } = name;

    public string Identity => $"spiffe://cluster.local/ns/{PodMesh.Namespace}/sa/{Name}";

    public string ServiceAddress { get; } = mesh.NextServiceAddress();

    public string Ip => Pause.IpAddress;

    public IContainer Pause { get; private set; } = null!;

    public IContainer Init { get; private set; } = null!;

    public IContainer Sidecar { get; private set; } = null!;

    public IContainer App { get; private set; } = null!;

    internal async Task StartAsync()
    {
        var prefix = mesh.Name(Name);
        Pause = new ContainerBuilder(MeshImages.Tools)
            .WithName(prefix)
            .WithNetwork(mesh.Network)
            .WithCreateParameterModifier(p => p.HostConfig!.Init = true)
            .Build();
        await Pause.StartAsync();

        Init = InPod("init", MeshImages.Sidecar)
            .WithCommand("capture", "--inbound-port", "15006", "--outbound-port", "15001", "--proxy-uid", "1337", "--exclude-inbound-ports", "15021,15020")
            .WithCreateParameterModifier(p =>
            {
                p.User = "0:0";
                p.HostConfig!.CapAdd = ["NET_ADMIN", "NET_RAW"];
            })
            .Build();
        await Init.StartAsync();
        var initExit = await Init.GetExitCodeAsync().WaitAsync(PodMesh.Timeout);
        var (initOut, initErr) = await Init.GetLogsAsync(timestampsEnabled: false);
        mesh.Log($"{Name} ztm-init exited {initExit}: {initErr}{initOut.Split('\n').LastOrDefault(l => l.Length > 0)}");
        Assert.True(initExit == 0, $"{Name}'s capture step exited {initExit}: {initErr}{initOut}");

        var sidecar = InPod("sidecar", MeshImages.Sidecar)
            .WithCommand([
                "--control-plane", settings.ControlPlane ?? mesh.ControlPlaneAddress,
                "--trust-bundle", "/var/run/ztm/ca/root-cert.pem",
                "--inbound-address", Ip,
                "--app-port", AppPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--service-address", ServiceAddress,
                .. settings.SidecarArgs])
            .WithBindMount(mesh.BundlePath, "/var/run/ztm/ca/root-cert.pem", AccessMode.ReadOnly)
            .WithEnvironment("ZTM_JOIN_TOKEN", settings.ControlPlane is null ? await mesh.MintTokenAsync(Name) : "ztmjt_never_presented");
        foreach (var (key, value) in settings.SidecarEnvironment)
        {
            sidecar = sidecar.WithEnvironment(key, value);
        }
        if (settings.WaitForSidecar)
        {
            sidecar = sidecar.WithWaitStrategy(Wait.ForUnixContainer()
                .UntilMessageIsLogged("registered with the control plane", o => o.WithTimeout(PodMesh.Timeout))
                .UntilMessageIsLogged(@"config v\d+ applied", o => o.WithTimeout(PodMesh.Timeout)));
        }
        Sidecar = sidecar.Build();
        await Sidecar.StartAsync();

        App = InPod("app", MeshImages.DemoApp)
            .WithCommand("--name", Name, "--listen", "0.0.0.0", "--http-port", "8080", "--grpc-port", "8081", "--tcp-port", "-1")
            .WithCreateParameterModifier(p => p.User = "1000:1000")
            .WithWaitStrategy(Wait.ForUnixContainer().UntilMessageIsLogged("http listening on", o => o.WithTimeout(PodMesh.Timeout)))
            .Build();
        await App.StartAsync();
        mesh.Log($"pod {Name} up: ip {Ip}, service address {ServiceAddress}");
    }

    /// <summary>A container joining this pod's network namespace: no capabilities, read-only root file system.</summary>
    private ContainerBuilder InPod(string role, string image) => new ContainerBuilder(image)
        .WithName($"{mesh.Name(Name)}-{role}")
        .WithCreateParameterModifier(p =>
        {
            p.HostConfig!.NetworkMode = $"container:{Pause.Id}";
            p.HostConfig.ReadonlyRootfs = true;
            p.HostConfig.CapDrop = ["ALL"];
        });

    /// <summary>
    /// curl in this pod as the app (UID 1000): the HTTP status ("000" when no response came) and the body. A few seconds
    /// at most: a refused or captured-and-dropped connection fails fast.
    /// </summary>
    public Task<CurlResult> CurlAsync(string url, params string[] extra) => Curl(Pause, url, extra);

    public static async Task<CurlResult> Curl(IContainer from, string url, params string[] extra)
    {
        var result = await from.ExecAsync(["curl", "-sS", "-m", "5", "-o", "-", "-w", "\n%{http_code}", .. extra, url]).WaitAsync(PodMesh.Timeout);
        var output = result.Stdout;
        var split = output.LastIndexOf('\n');
        return new CurlResult(split < 0 ? output : output[(split + 1)..], split < 0 ? "" : output[..split], result.ExitCode ?? -1, result.Stderr.Trim());
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var container in new[] { App, Sidecar, Init, Pause })
        {
            if (container is not null)
            {
                await container.DisposeAsync();
            }
        }
    }
}

public sealed record CurlResult(string Status, string Body, long ExitCode, string Error)
{
    public override string ToString() => $"status {Status}, curl exit {ExitCode} {Error}: {Body}";
}
