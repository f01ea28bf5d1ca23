using System.Globalization;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Tests.Attestation;

/// <summary>Join tokens on disk: constant work per token, nothing acknowledged lost in a crash, single use across restarts.</summary>
[Collection(ByteCounting.Name)]
public sealed class FileJoinTokenStoreTests : IDisposable
{
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");

    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-tokens-").FullName;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 24, 12, 0, 0, TimeSpan.Zero));

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    [Fact]
    public void Minting_thousands_of_tokens_writes_bytes_in_proportion_to_the_tokens_not_to_their_square()
    {
        const int Tokens = 3000;
        using var store = new FileJoinTokenStore(_dataDir, _time);
        var before = BytesWrittenByThisProcess();

        for (var i = 0; i < Tokens; i++)
        {
            store.Create(Orders, TimeSpan.FromMinutes(10));
        }

        // About 170 bytes per log line and per snapshot entry; the snapshot is rewritten at 1024 and 2048 tokens.
        // Rewriting the whole set per token (as before) wrote about Tokens²/2 entries: over 700 MB here.
        var written = BytesWrittenByThisProcess() - before;
        Assert.InRange(written, Tokens * 100L, 8L * 1024 * 1024);
        Assert.True(store.LogLines < Math.Max(FileJoinTokenStore.CompactAfter, Tokens));
    }

    [Fact]
    public void Tokens_and_their_use_survive_a_restart_and_a_used_token_stays_used()
    {
        string used, unused;
        using (var store = new FileJoinTokenStore(_dataDir, _time))
        {
            used = store.Create(Orders, TimeSpan.FromMinutes(10)).Token;
            unused = store.Create(Orders, TimeSpan.FromMinutes(10)).Token;
            Assert.Equal(Orders, store.Redeem(used, _ => { }));
        }

        using var restarted = new FileJoinTokenStore(_dataDir, _time);
        var again = Assert.Throws<IssuanceRefusedException>(() => restarted.Redeem(used, _ => { }));
        Assert.Contains("already used", again.Message, StringComparison.Ordinal);
        Assert.Equal(Orders, restarted.Redeem(unused, _ => { }));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_dataDir, "join-tokens.log")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_dataDir, "join-tokens.json")));
    }

    [Fact]
    public void A_crash_mid_append_loses_only_the_call_that_never_returned()
    {
        string token;
        using (var store = new FileJoinTokenStore(_dataDir, _time))
        {
            token = store.Create(Orders, TimeSpan.FromMinutes(10)).Token;
        }
        // What a crash in the middle of the next append leaves: a line without its end.
        File.AppendAllText(Path.Combine(_dataDir, "join-tokens.log"), "{\"hash\":\"00ff\",\"spiffeId\":\"spiffe://clu");

        using var restarted = new FileJoinTokenStore(_dataDir, _time);
        Assert.Equal(Orders, restarted.Redeem(token, _ => { }));
        var minted = restarted.Create(Orders, TimeSpan.FromMinutes(10)).Token; // appends cleanly after the torn line
        using var again = new FileJoinTokenStore(_dataDir, _time);
        Assert.Equal(Orders, again.Redeem(minted, _ => { }));
    }

    [Fact]
    public void A_token_is_spent_only_if_the_caller_accepts_the_identity_and_a_refusal_says_what_happened()
    {
        using var store = new FileJoinTokenStore(_dataDir, _time);
        var (token, expiresAt) = store.Create(Orders, TimeSpan.FromMinutes(10));

        Assert.Throws<InvalidOperationException>(() => store.Redeem(token, _ => throw new InvalidOperationException("CSR for another identity")));
        Assert.Equal(Orders, store.Redeem(token, _ => { }));

        var late = store.Create(Orders, TimeSpan.FromMinutes(1)).Token;
        _time.Advance(TimeSpan.FromMinutes(2));
        Assert.Contains($"join token expired at {_time.GetUtcNow() - TimeSpan.FromMinutes(1):O}", Assert.Throws<IssuanceRefusedException>(() => store.Redeem(late, _ => { })).Message, StringComparison.Ordinal);
        Assert.Contains("unknown join token", Assert.Throws<IssuanceRefusedException>(() => store.Redeem("ztmjt_never-minted", _ => { })).Message, StringComparison.Ordinal);
        Assert.True(expiresAt > _time.GetUtcNow() - TimeSpan.FromMinutes(10));
    }

    [Fact]
    public void A_join_tokens_json_written_by_an_earlier_version_is_read()
    {
        // The format before the log (and what BadInputFixture seeds): a JSON array of records, hashes only.
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData("ztmjt_from-an-earlier-version"u8));
        var expiresAt = _time.GetUtcNow().AddMinutes(5).ToString("O", CultureInfo.InvariantCulture);
        File.WriteAllText(Path.Combine(_dataDir, "join-tokens.json"),
            $$"""[{"hash":"{{hash}}","spiffeId":"spiffe://cluster.local/ns/shop/sa/orders","expiresAt":"{{expiresAt}}","usedAt":null}]""");

        using var store = new FileJoinTokenStore(_dataDir, _time);

        Assert.Equal(Orders, store.Redeem("ztmjt_from-an-earlier-version", _ => { }));
    }

    /// <summary>Bytes this process handed to write(2) so far (<c>wchar</c> in /proc/self/io).</summary>
    private static long BytesWrittenByThisProcess() =>
        long.Parse(File.ReadLines("/proc/self/io").Single(l => l.StartsWith("wchar:", StringComparison.Ordinal))["wchar:".Length..].Trim(), CultureInfo.InvariantCulture);
}

/// <summary>Tests that count this process's written bytes run alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ByteCounting
{
    public const string Name = "byte counting";
}
