using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.Config;

/// <summary>L4 mode as sidecars receive it: decided from the workload's resources, in the config snapshot, only with --l4-mode on.</summary>
public sealed class PortModesTests() : ControlPlanePartsTest("port-modes")
{
    private static readonly WorkloadRef Orders = new("shop", "orders");

    private const string OrdersL7 = """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-from-shop, namespace: shop}
        spec:
          selector: {service: orders}
          action: ALLOW
          rules:
            - from: [{source: {namespaces: ["shop"]}}]
              to: [{operation: {methods: ["GET"], ports: [9090]}}]
        """;

    private async Task<ControlPlaneParts> StartAsync(bool l4Mode)
    {
        var defaults = ControlPlaneParts.Options(DataDir);
        return await ControlPlaneParts.StartAsync(DataDir, Time, options: new ControlPlaneOptions
        {
            DataDir = defaults.DataDir,
            ListenAddress = defaults.ListenAddress,
            Port = defaults.Port,
            TrustDomain = defaults.TrustDomain,
            SvidTtl = defaults.SvidTtl,
            JoinTokenTtl = defaults.JoinTokenTtl,
            OperatorConfigPath = defaults.OperatorConfigPath,
            L4Mode = l4Mode,
        });
    }

    private static PortModes Sent(ControlPlaneParts parts)
    {
        var state = parts.Get<ConfigStore>().Current;
        return ConfigSnapshot.Parser.ParseFrom(parts.Get<ConfigDistributor>().SnapshotFor(state, Orders).Bytes).PortModes;
    }

    [Fact]
    public async Task Off_by_default_sidecars_are_told_every_port_is_L7()
    {
        await using var parts = await StartAsync(l4Mode: false);
        parts.Get<IPolicySource>().Apply("orders.yaml", OrdersFromShop, "operator");

        Assert.False(Sent(parts).L4Enabled);
        Assert.False(Proto.PortModesMapping.FromProto(Sent(parts)).IsL4(8080));
    }

    [Fact]
    public async Task On_an_L4_only_policy_is_L4_everywhere_and_an_L7_rule_makes_its_port_L7_in_the_next_version()
    {
        await using var parts = await StartAsync(l4Mode: true);
        parts.Get<IPolicySource>().Apply("orders.yaml", OrdersFromShop, "operator");

        var l4 = Sent(parts);
        Assert.True(l4.L4Enabled);
        Assert.Equal("", l4.AllPortsL7);
        Assert.Empty(l4.L7Ports);

        parts.Get<IPolicySource>().Apply("orders.yaml", OrdersL7, "operator");

        var modes = Proto.PortModesMapping.FromProto(Sent(parts));
        Assert.True(modes.IsL4(8080));
        Assert.Equal("AuthorizationPolicy 'shop/orders-from-shop' rule 0: 'methods' needs the HTTP request", modes.L7Reason(9090));
    }

    [Fact]
    public void A_port_out_of_range_is_refused_when_read()
    {
        var wire = new PortModes { L4Enabled = true };
        wire.L7Ports[70000] = "x";

        Assert.Contains("70000", Assert.Throws<FormatException>(() => Proto.PortModesMapping.FromProto(wire)).Message, StringComparison.Ordinal);
    }
}
