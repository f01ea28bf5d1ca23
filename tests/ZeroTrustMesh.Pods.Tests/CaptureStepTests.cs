using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Containers;
using Xunit.Abstractions;
using ZeroTrustMesh.Pods.Tests.Infrastructure;

namespace ZeroTrustMesh.Pods.Tests;

/// <summary><c>ztm-sidecar capture</c> as the image runs it, in a network namespace of its own (the pods use it applied).</summary>
[Collection(PodsCollection.Name)]
public sealed class CaptureStepTests(PodMesh mesh, ITestOutputHelper output)
{
    private async Task<(long ExitCode, string Stdout, string Stderr)> RunAsync(bool netAdmin, params string[] args)
    {
        _ = mesh; // the collection's fixture has built the images
        await using var container = new ContainerBuilder(MeshImages.Sidecar)
            .WithCommand(["capture", .. args])
            .WithCreateParameterModifier(p =>
            {
                p.User = "0:0";
                p.HostConfig!.NetworkMode = "none";
                p.HostConfig.ReadonlyRootfs = true;
                p.HostConfig.CapDrop = ["ALL"];
                p.HostConfig.CapAdd = netAdmin ? ["NET_ADMIN", "NET_RAW"] : [];
            })
            .Build();
        await container.StartAsync();
        var exit = await container.GetExitCodeAsync().WaitAsync(PodMesh.Timeout);
        var (stdout, stderr) = await container.GetLogsAsync(timestampsEnabled: false);
        output.WriteLine($"capture {string.Join(' ', args)} -> {exit}\n{stdout}{stderr}");
        return (exit, stdout, stderr);
    }

    [PodFact]
    public async Task An_invalid_value_exits_2_with_one_line_and_applies_nothing()
    {
        var (exit, stdout, stderr) = await RunAsync(netAdmin: true, "--exclude-outbound-cidrs", "10.0.0.0/8,not-a-cidr");

        Assert.Equal(2, exit);
        Assert.Equal("ztm-sidecar capture: --exclude-outbound-cidrs: 'not-a-cidr' is not an IPv4 CIDR like 10.0.0.0/8", stderr.Trim());
        Assert.Empty(stdout.Trim());
    }

    [PodFact]
    public async Task Without_net_admin_it_exits_1_saying_what_it_needs()
    {
        var (exit, _, stderr) = await RunAsync(netAdmin: false);

        Assert.Equal(1, exit);
        var line = Assert.Single(stderr.Trim().Split('\n'));
        Assert.StartsWith("ztm-sidecar capture: iptables-save -t nat exited ", line, StringComparison.Ordinal);
        Assert.EndsWith("(it needs NET_ADMIN and NET_RAW, as UID 0)", line, StringComparison.Ordinal);
    }

    [PodFact]
    public async Task Applied_on_a_read_only_root_with_only_net_admin_and_net_raw_it_prints_the_rules_it_wrote()
    {
        var (exit, stdout, stderr) = await RunAsync(netAdmin: true, "--exclude-inbound-ports", "15021,15020", "--exclude-outbound-ports", "5432");

        Assert.True(exit == 0, stderr);
        Assert.Contains("-A ZTM_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n", stdout, StringComparison.Ordinal);
        Assert.Contains("-A ZTM_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN\n", stdout, StringComparison.Ordinal);
        Assert.EndsWith("ztm-sidecar capture: applied (inbound TCP -> 15006, outbound TCP -> 15001, UID 1337 not captured)", stdout.Trim(), StringComparison.Ordinal);
    }
}
