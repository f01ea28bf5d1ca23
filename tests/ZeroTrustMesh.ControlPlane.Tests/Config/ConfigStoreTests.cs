using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Policy;

namespace ZeroTrustMesh.ControlPlane.Tests.Config;

/// <summary>The config version: a counter the distribution side owns, that only grows, and survives restarts.</summary>
public sealed class ConfigStoreTests() : ControlPlanePartsTest("config")
{
    [Fact]
    public async Task Every_change_of_policy_or_revocations_is_the_next_version_and_a_restart_without_changes_keeps_it()
    {
        var parts = await Start();
        var store = parts.Get<ConfigStore>();
        Assert.Equal("v0", store.Current.Version);
        var published = new List<string>();
        store.Changed += s => published.Add(s.Version);

        parts.Get<IPolicySource>().Apply("orders.yaml", OrdersFromShop, "operator");
        parts.Get<Revoker>().Revoke("abcd", null, "", "operator");
        parts.Get<IPolicySource>().Apply("orders.yaml", OrdersFromShop, "operator"); // unchanged: no version

        Assert.Equal(["v1", "v2"], published);
        Assert.Equal("v2", store.Current.Version);
        Assert.Equal(2, File.ReadLines(Path.Combine(DataDir, "policy-audit.log")).Count());
        await parts.StopAsync();

        var restarted = (await Start()).Get<ConfigStore>();
        Assert.Equal("v2", restarted.Current.Version);
        Assert.Single(restarted.Current.Resources);
        Assert.Single(restarted.Current.Revocations.Entries);
    }

    [Fact]
    public async Task Content_changed_while_the_control_plane_was_stopped_is_the_next_version_at_start()
    {
        var parts = await Start();
        parts.Get<IPolicySource>().Apply("orders.yaml", OrdersFromShop, "operator");
        await parts.StopAsync();

        // An operator removes the file while the control plane is down: sidecars must see a new version, not v1 again.
        foreach (var file in Directory.EnumerateFiles(Path.Combine(DataDir, "policies")))
        {
            File.Delete(file);
        }
        var restarted = (await Start()).Get<ConfigStore>();

        Assert.Equal("v2", restarted.Current.Version);
        Assert.Empty(restarted.Current.Resources);
        Assert.Contains("\"action\":\"start\"", File.ReadLines(Path.Combine(DataDir, "policy-audit.log")).Last(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_data_directory_from_before_the_counter_keeps_the_version_its_audit_log_counted()
    {
        // Before config-version.json the version was the number of lines in the audit log.
        File.WriteAllLines(Path.Combine(DataDir, "policy-audit.log"), Enumerable.Range(1, 7).Select(i => $"{{\"version\":\"v{i}\"}}"));

        var parts = await Start();
        Assert.Equal("v7", parts.Get<ConfigStore>().Current.Version);
        parts.Get<Revoker>().Revoke("abcd", null, "", "operator");
        Assert.Equal("v8", parts.Get<ConfigStore>().Current.Version);
        Assert.True(File.Exists(Path.Combine(DataDir, "config-version.json")));
    }

    private Task<ControlPlaneParts> Start() => StartPartsAsync();
}
