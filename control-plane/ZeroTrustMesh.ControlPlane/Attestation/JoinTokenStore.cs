using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Attestation;

/// <summary>
/// Single-use, expiring join tokens, each bound to exactly one workload identity. Only a SHA-256 of each
/// token is kept, in <c>join-tokens.json</c> (0600) in the data directory, so a restart neither forgets
/// a token nor lets a spent one be used again. Entries are pruned when the file is written, once they
/// expired more than <see cref="Retention"/> ago: until then a late caller is told its token expired
/// (or was used), not that it is unknown.
/// </summary>
internal sealed class JoinTokenStore : IAttestor
{
    public const string Prefix = "ztmjt_";

    /// <summary>How long an expired entry is kept; the longest a token lives, so the file holds at most two days of tokens.</summary>
    public static readonly TimeSpan Retention = ControlPlaneOptions.MaxJoinTokenTtl;

    private readonly string _path;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, JoinTokenRecord> _byHash;

    public JoinTokenStore(string dataDir, TimeProvider time)
    {
        _path = Path.Combine(dataDir, "join-tokens.json");
        _time = time;
        _byHash = File.Exists(_path)
            ? JsonSerializer.Deserialize(File.ReadAllText(_path), JoinTokenJson.Default.ListJoinTokenRecord)!.ToDictionary(r => r.Hash)
            : [];
    }

    public string Kind => "join_token";

    public (string Token, DateTimeOffset ExpiresAt) Create(SpiffeId id, TimeSpan ttl)
    {
        var token = Prefix + Base64Url(RandomNumberGenerator.GetBytes(32));
        var expiresAt = _time.GetUtcNow() + ttl;
        lock (_gate)
        {
            _byHash[Hash(token)] = new JoinTokenRecord(Hash(token), id.Value, expiresAt, null);
            Save();
        }
        return (token, expiresAt);
    }

    public SpiffeId Attest(string proof, Action<SpiffeId> accept)
    {
        var hash = Hash(proof);
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            if (!_byHash.TryGetValue(hash, out var record))
            {
                throw new IssuanceRefusedException(RefusalKind.Unauthenticated, "unknown join token");
            }
            if (record.UsedAt is { } usedAt)
            {
                throw new IssuanceRefusedException(RefusalKind.Unauthenticated, $"join token was already used at {usedAt:O}; tokens are single-use");
            }
            if (now >= record.ExpiresAt)
            {
                throw new IssuanceRefusedException(RefusalKind.Unauthenticated, $"join token expired at {record.ExpiresAt:O}");
            }
            var id = SpiffeId.Parse(record.SpiffeId);
            accept(id);
            _byHash[hash] = record with { UsedAt = now };
            Save();
            return id;
        }
    }

    private void Save()
    {
        var now = _time.GetUtcNow();
        // Pruning at expiry would turn "expired" and "already used" into "unknown" as soon as any other token is
        // minted or spent; keep entries a while longer so the refusal says what really happened.
        foreach (var stale in _byHash.Values.Where(r => r.ExpiresAt + Retention <= now).ToList())
        {
            _byHash.Remove(stale.Hash);
        }
        Pem.WriteSecret(_path, JsonSerializer.Serialize(_byHash.Values.ToList(), JoinTokenJson.Default.ListJoinTokenRecord));
    }

    private static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}

internal sealed record JoinTokenRecord(string Hash, string SpiffeId, DateTimeOffset ExpiresAt, DateTimeOffset? UsedAt);

[JsonSerializable(typeof(List<JoinTokenRecord>))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class JoinTokenJson : JsonSerializerContext;
