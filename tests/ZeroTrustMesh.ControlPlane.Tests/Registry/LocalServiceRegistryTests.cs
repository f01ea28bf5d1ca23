using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Registry;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Tests.Registry;

/// <summary>The standalone registry: what a restarted control plane knows before the sidecars heartbeat again.</summary>
public sealed class LocalServiceRegistryTests : IDisposable
{
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");

    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-registry-").FullName;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 24, 12, 0, 0, TimeSpan.Zero));

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    [Fact]
    public async Task A_restarted_registry_answers_with_the_endpoints_it_had_for_one_ttl()
    {
        using (var registry = Create())
        {
            registry.Register(Orders, "10.0.0.7:15006", [8080], [], "10.96.0.10");
            await registry.StopAsync(CancellationToken.None); // a graceful stop saves what changed
        }

        using var restarted = Create();

        var endpoint = Assert.Single(restarted.ResolveName("orders"));
        Assert.Equal(("orders.shop", Orders, "10.0.0.7:15006", 8080, "10.96.0.10"),
            (endpoint.Service, endpoint.Identity, endpoint.InboundAddress, endpoint.HttpPorts.Single(), endpoint.ServiceAddress));
        Assert.Single(restarted.ResolveAddress("10.96.0.10:8080"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_dataDir, "registry.json")));

        // A sidecar that is gone does not come back: without a heartbeat the endpoint ends one TTL after the restart.
        _time.Advance(restarted.Ttl);
        Assert.Empty(restarted.ResolveName("orders"));
    }

    [Fact]
    public void Changes_are_saved_a_moment_later_and_heartbeats_are_not_changes()
    {
        using var registry = Create();
        var path = Path.Combine(_dataDir, "registry.json");

        registry.Register(Orders, "10.0.0.7:15006", [8080], [], null);
        Assert.False(File.Exists(path));
        _time.Advance(LocalServiceRegistry.SaveDelay);
        var saved = File.ReadAllText(path);
        Assert.Contains("10.0.0.7:15006", saved, StringComparison.Ordinal);

        File.Delete(path);
        registry.Register(Orders, "10.0.0.7:15006", [8080], [], null); // a heartbeat
        _time.Advance(LocalServiceRegistry.SaveDelay);
        Assert.False(File.Exists(path));

        registry.Register(Orders, "10.0.0.7:15006", [8080, 8081], [], null); // a change
        _time.Advance(LocalServiceRegistry.SaveDelay);
        Assert.Contains("8081", File.ReadAllText(path), StringComparison.Ordinal);
    }

    [Fact]
    public void An_unreadable_registry_file_is_a_warning_not_a_failure_to_start()
    {
        File.WriteAllText(Path.Combine(_dataDir, "registry.json"), "{ not json");

        using var registry = Create();

        Assert.Empty(registry.ResolveName("orders"));
    }

    private LocalServiceRegistry Create() =>
        new(ControlPlaneParts.Options(_dataDir), _time, NullLogger<LocalServiceRegistry>.Instance);
}
