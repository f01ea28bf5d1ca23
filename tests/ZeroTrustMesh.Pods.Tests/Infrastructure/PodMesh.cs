using System.Globalization;
using System.Text;
using Docker.DotNet.Models;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Configurations;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Networks;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace ZeroTrustMesh.Pods.Tests.Infrastructure;

[CollectionDefinition(Name)]
public sealed class PodsCollection : ICollectionFixture<PodMesh>
{
    public const string Name = "pods";
}

/// <summary>
/// The topology every pod test runs in: a user-defined bridge network on a /24 of its own, the control plane in its own
/// container (data directory in the image, operator config beside it, so <c>ztmctl</c> runs in the same container), the
/// policy, and pods <c>a</c> and <c>b</c> (namespace <c>shop</c>) with the demo app behind their sidecars. An
/// <see cref="Outsider"/> on the same network, in no pod, stands for anything outside the mesh.
/// </summary>
public sealed class PodMesh(IMessageSink diagnostics) : IAsyncLifetime
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public const string Namespace = "shop";

    /// <summary>What the policy says for service <c>b</c> (and <c>d</c>, the drain test's pod): GET from <c>a</c> under
    /// /allowed/ and /slow/, except /allowed/secret, which a DENY refuses to anyone.</summary>
    public const string Policy = """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: b-from-a, namespace: shop}
        spec:
          selector: {service: b}
          action: ALLOW
          rules:
            - from: [{source: {principals: ["spiffe://cluster.local/ns/shop/sa/a"]}}]
              to: [{operation: {methods: ["GET"], paths: ["/allowed/*", "/slow/*"]}}]
        ---
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: b-no-secrets, namespace: shop}
        spec:
          selector: {service: b}
          action: DENY
          rules:
            - to: [{operation: {paths: ["/allowed/secret"]}}]
        ---
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: d-from-a, namespace: shop}
        spec:
          selector: {service: d}
          action: ALLOW
          rules:
            - from: [{source: {principals: ["spiffe://cluster.local/ns/shop/sa/a"]}}]
              to: [{operation: {methods: ["GET"], paths: ["/slow/*", "/allowed/*"]}}]
        """;

    private readonly string _suffix = Random.Shared.Next(0x1000, 0xFFFF).ToString("x", CultureInfo.InvariantCulture);
    private readonly List<Pod> _pods = [];
    private int _subnet;
    private int _nextServiceAddress = 200;

    public INetwork Network { get; private set; } = null!;

    public IContainer ControlPlane { get; private set; } = null!;

    public IContainer Outsider { get; private set; } = null!;

    public string ControlPlaneAddress => $"https://{ControlPlane.IpAddress}:15012";

    /// <summary>The trust bundle on this host, bind-mounted read-only into the sidecars.</summary>
    public string BundlePath { get; private set; } = "";

    public string Scratch { get; } = Path.Combine(Path.GetTempPath(), "ztm-pods-" + Guid.NewGuid().ToString("n")[..8]);

    public Pod A { get; private set; } = null!;

    public Pod B { get; private set; } = null!;

    public void Log(string line) => diagnostics.OnMessage(new DiagnosticMessage($"pods: {line}"));

    public async Task InitializeAsync()
    {
        DockerEngine.PrepareTestcontainers(Log);
        await MeshImages.EnsureBuiltAsync(Log);
        Directory.CreateDirectory(Scratch);

        Network = await CreateNetworkAsync();
        ControlPlane = new ContainerBuilder(MeshImages.ControlPlane)
            .WithName($"ztm-controlplane-{_suffix}")
            .WithNetwork(Network)
            .WithWaitStrategy(Wait.ForUnixContainer().UntilMessageIsLogged("ztm-controlplane: listening on", o => o.WithTimeout(Timeout)))
            .Build();
        Outsider = new ContainerBuilder(MeshImages.Tools)
            .WithName($"ztm-outsider-{_suffix}")
            .WithNetwork(Network)
            .WithCreateParameterModifier(p => p.HostConfig!.Init = true)
            .Build();
        await Task.WhenAll(ControlPlane.StartAsync(), Outsider.StartAsync());
        await File.WriteAllBytesAsync(BundlePath = Path.Combine(Scratch, "root-cert.pem"), await ControlPlane.ReadFileAsync("/var/lib/ztm/bundle.pem"));
        await ApplyAsync(Policy);

        A = await StartPodAsync("a");
        B = await StartPodAsync("b");
    }

    /// <summary>Applies policy YAML with ztmctl in the control plane's container.</summary>
    public async Task ApplyAsync(string yaml)
    {
        await ControlPlane.CopyAsync(Encoding.UTF8.GetBytes(yaml), "/tmp/policy.yaml", 65532, 65532, UnixFileModes.UserRead | UnixFileModes.UserWrite);
        var applied = await ControlPlane.ExecAsync(["ztmctl", "apply", "-f", "/tmp/policy.yaml"]);
        Assert.True(applied.ExitCode == 0, $"ztmctl apply: {applied.Stderr}{applied.Stdout}");
    }

    public async Task<string> MintTokenAsync(string serviceAccount)
    {
        var minted = await ControlPlane.ExecAsync(["ztmctl", "token", "create", "-n", Namespace, "-s", serviceAccount, "-o", "token"]);
        Assert.True(minted.ExitCode == 0, $"ztmctl token create: {minted.Stderr}");
        return minted.Stdout.Trim();
    }

    /// <summary>An address on the network's /24 that no container has: a service address, like a ClusterIP.</summary>
    public string NextServiceAddress() => $"10.213.{_subnet}.{Interlocked.Increment(ref _nextServiceAddress)}";

    public string Name(string pod) => $"ztm-pod-{pod}-{_suffix}";

    /// <summary>Starts a pod in pod order (see <see cref="Pod"/>) and removes it with the mesh.</summary>
    public async Task<Pod> StartPodAsync(string name, PodSettings? settings = null)
    {
        var pod = new Pod(this, name, settings ?? new PodSettings());
        lock (_pods)
        {
            _pods.Add(pod);
        }
        await pod.StartAsync();
        return pod;
    }

    private async Task<INetwork> CreateNetworkAsync()
    {
        // A /24 of 10.213.x.0 of our own, so that service addresses are on it and unassigned: a packet to one that the
        // capture rules missed goes nowhere but this bridge.
        for (var attempt = 0; ; attempt++)
        {
            _subnet = Random.Shared.Next(0, 256);
            var network = new NetworkBuilder()
                .WithName($"ztm-pods-{_suffix}-{attempt}")
                .WithCreateParameterModifier(p => p.IPAM = new IPAM
                {
                    Config = [new IPAMConfig { Subnet = $"10.213.{_subnet}.0/24", IPRange = $"10.213.{_subnet}.0/25", Gateway = $"10.213.{_subnet}.1" }],
                })
                .Build();
            try
            {
                await network.CreateAsync();
                return network;
            }
            catch (Exception e) when (attempt < 3 && e.Message.Contains("overlap", StringComparison.OrdinalIgnoreCase))
            {
                Log($"subnet 10.213.{_subnet}.0/24 is taken ({e.Message}); trying another");
            }
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var pod in Enumerable.Reverse(_pods))
        {
            await pod.DisposeAsync();
        }
        foreach (var container in new[] { Outsider, ControlPlane })
        {
            if (container is not null)
            {
                await container.DisposeAsync();
            }
        }
        if (Network is not null)
        {
            await Network.DisposeAsync();
        }
        if (Directory.Exists(Scratch))
        {
            Directory.Delete(Scratch, recursive: true);
        }
    }
}
