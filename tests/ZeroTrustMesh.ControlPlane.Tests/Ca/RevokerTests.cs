using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;

namespace ZeroTrustMesh.ControlPlane.Tests.Ca;

/// <summary>Revocations in the control plane: persisted, audited, versioned, validated, and dropped once they cannot matter.</summary>
public sealed class RevokerTests() : ControlPlanePartsTest("revoker")
{
    [Fact]
    public async Task A_revocation_is_a_new_version_written_0600_and_to_the_audit_log()
    {
        var (store, revoker) = await Start();
        var before = store.Current.Version;

        var (state, entries, changed) = revoker.Revoke("00:AB:CD:EF", null, "key leaked", "operator");

        Assert.True(changed);
        Assert.NotEqual(before, state.Version);
        Assert.Equal("abcdef", Assert.Single(state.Revocations.Entries).Serial);
        Assert.Equal(Time.GetUtcNow() + ControlPlaneOptions.MaxSvidTtl, entries[0].ExpiresAt);
        var file = Path.Combine(DataDir, "revocations.json");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        var audit = File.ReadLines(Path.Combine(DataDir, "policy-audit.log")).Last();
        Assert.Contains("\"action\":\"revoke\"", audit, StringComparison.Ordinal);
        Assert.Contains("serial abcdef", audit, StringComparison.Ordinal);
        Assert.Contains("key leaked", audit, StringComparison.Ordinal);

        // The same serial again changes nothing: no new version.
        var again = revoker.Revoke("abcdef", null, "", "operator");
        Assert.False(again.Changed);
        Assert.Equal(state.Version, again.State.Version);
    }

    [Fact]
    public async Task Revocations_survive_a_restart()
    {
        var (_, revoker) = await Start();
        revoker.Revoke("1234", "spiffe://cluster.local/ns/shop/sa/orders", "", "operator");

        var (restarted, _) = await Start();

        Assert.Equal(2, restarted.Current.Revocations.Count);
        var byId = restarted.Current.Revocations.Entries.Single(e => e.Id is not null);
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/orders", byId.Id!.Value.Value);
        Assert.Equal(Time.GetUtcNow(), byId.IssuedBefore); // the fake clock is on a whole second
    }

    [Fact]
    public async Task Expired_revocations_are_pruned_by_theTimer_as_a_new_version()
    {
        var (store, revoker) = await Start();
        revoker.Revoke("1234", null, "", "operator");
        Time.Advance(TimeSpan.FromHours(12));
        revoker.Revoke(null, "spiffe://cluster.local/ns/shop/sa/orders", "", "operator");
        var version = store.Current.Version;

        Time.Advance(TimeSpan.FromHours(12)); // the serial's entry has outlived the longest SVID

        var remaining = Assert.Single(store.Current.Revocations.Entries);
        Assert.NotNull(remaining.Id);
        Assert.NotEqual(version, store.Current.Version);
        Assert.Contains("\"action\":\"expire\"", File.ReadLines(Path.Combine(DataDir, "policy-audit.log")).Last(), StringComparison.Ordinal);

        Time.Advance(TimeSpan.FromHours(12));
        Assert.Equal(0, store.Current.Revocations.Count);
        Assert.Equal(0, (await Start()).Store.Current.Revocations.Count); // and the file says so too
    }

    [Fact]
    public async Task Entries_that_expired_while_the_control_plane_was_down_are_dropped_at_start()
    {
        var (_, revoker) = await Start();
        revoker.Revoke("1234", null, "", "operator");
        await _last!.StopAsync(); // the control plane stops; its pruning with it
        Time.Advance(TimeSpan.FromDays(2));

        Assert.Equal(0, (await Start()).Store.Current.Revocations.Count);
    }

    [Theory]
    [InlineData("xyz", null, "'xyz' is not a certificate serial")]
    [InlineData("12345678901234567890123456789012345678901234", null, "is not a certificate serial")]
    [InlineData(null, "spiffe://cluster.local/ns/shop/sa/orders/extra?x", "is not a SPIFFE ID")]
    [InlineData(null, "http://cluster.local/ns/shop/sa/orders", "is not a SPIFFE ID")]
    [InlineData(null, "spiffe://other.example/ns/shop/sa/orders", "is not in this mesh's trust domain 'cluster.local'")]
    [InlineData(null, "spiffe://cluster.local/ztm/operator", "is not a workload identity")]
    [InlineData(null, null, "name what to revoke")]
    [InlineData(" ", "", "name what to revoke")]
    public async Task Bad_input_is_refused_with_the_reason_and_changes_nothing(string? serial, string? spiffeId, string message)
    {
        var (store, revoker) = await Start();
        var version = store.Current.Version;

        var refused = Assert.Throws<RevocationRefusedException>(() => revoker.Revoke(serial, spiffeId, "", "operator"));

        Assert.Contains(message, refused.Message, StringComparison.Ordinal);
        Assert.Equal(version, store.Current.Version);
        Assert.False(File.Exists(Path.Combine(DataDir, "revocations.json")));
    }

    /// <summary>A control plane on the test's data directory: the config store (version, revocations) and the revoker.</summary>
    private async Task<(ConfigStore Store, Revoker Revoker)> Start()
    {
        _last = await StartPartsAsync();
        return (_last.Get<ConfigStore>(), _last.Get<Revoker>());
    }

    private ControlPlaneParts? _last;
}
