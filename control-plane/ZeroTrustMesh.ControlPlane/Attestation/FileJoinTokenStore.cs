using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Attestation;

/// <summary>
/// Join tokens in the data directory. Only a SHA-256 of each token is kept, so neither file holds a usable token:
/// 1. <c>join-tokens.log</c> (0600): one JSON line per change of a token (minted, spent), appended and flushed to disk
///    before the call returns: constant work per token, and nothing acknowledged is lost in a crash;
/// 2. <c>join-tokens.json</c> (0600): the whole set, replaced atomically when the log has as many lines as the set
///    has tokens (and at least <see cref="CompactAfter"/>), after which the log is emptied: constant work per token
///    amortized, where rewriting the set per token was quadratic when minting thousands;
/// 3. at start: the set, then the log replayed over it (each line is a token's whole record, so replaying a line
///    twice is harmless, and a torn last line from a crash mid-append is dropped), then compacted.
/// Tokens are pruned at compaction once they expired more than <see cref="Retention"/> ago: until then a late caller
/// is told its token expired (or was used), not that it is unknown.
/// </summary>
internal sealed class FileJoinTokenStore : IJoinTokenStore, IDisposable
{
    public const string Prefix = "ztmjt_";

    /// <summary>The fewest log lines worth a compaction.</summary>
    public const int CompactAfter = 1024;

    /// <summary>How long an expired entry is kept; the longest a token lives, so the set holds at most two days of tokens.</summary>
    public static readonly TimeSpan Retention = ControlPlaneOptions.MaxJoinTokenTtl;

    private static readonly byte[] NewLine = "\n"u8.ToArray();

    private readonly string _snapshotPath;
    private readonly string _logPath;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, JoinTokenRecord> _byHash;
    private readonly FileStream _log;
    private int _logLines;

    public FileJoinTokenStore(string dataDir, TimeProvider time)
    {
        _snapshotPath = Path.Combine(dataDir, "join-tokens.json");
        _logPath = Path.Combine(dataDir, "join-tokens.log");
        _time = time;
        _byHash = File.Exists(_snapshotPath)
            ? JsonSerializer.Deserialize(File.ReadAllText(_snapshotPath), JoinTokenJson.Default.ListJoinTokenRecord)!.ToDictionary(r => r.Hash)
            : [];
        Replay();
        var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        _log = new FileStream(_logPath, options);
        Compact();
    }

    /// <summary>Lines in the log since the last compaction (tests watch the amortized cost with it).</summary>
    internal int LogLines => _logLines;

    public (string Token, DateTimeOffset ExpiresAt) Create(SpiffeId id, TimeSpan ttl)
    {
        var token = Prefix + Base64Url(RandomNumberGenerator.GetBytes(32));
        var expiresAt = _time.GetUtcNow() + ttl;
        lock (_gate)
        {
            Store(new JoinTokenRecord(Hash(token), id.Value, expiresAt, null));
        }
        return (token, expiresAt);
    }

    public SpiffeId Redeem(string token, Action<SpiffeId> accept)
    {
        var hash = Hash(token);
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
            Store(record with { UsedAt = now });
            return id;
        }
    }

    /// <summary>Appends the record to the log (on disk before this returns), then applies it; compacts when the log is due.</summary>
    private void Store(JoinTokenRecord record)
    {
        _log.Write(JsonSerializer.SerializeToUtf8Bytes(record, JoinTokenLogJson.Default.JoinTokenRecord));
        _log.Write(NewLine);
        _log.Flush(flushToDisk: true);
        _byHash[record.Hash] = record;
        if (++_logLines >= Math.Max(CompactAfter, _byHash.Count))
        {
            Compact();
        }
    }

    /// <summary>The set (pruned) to <c>join-tokens.json</c>, then an empty log: a crash in between replays lines already in the set.</summary>
    private void Compact()
    {
        var now = _time.GetUtcNow();
        // Pruning at expiry would turn "expired" and "already used" into "unknown" as soon as any other token is
        // minted or spent; keep entries a while longer so the refusal says what really happened.
        foreach (var stale in _byHash.Values.Where(r => r.ExpiresAt + Retention <= now).ToList())
        {
            _byHash.Remove(stale.Hash);
        }
        AtomicFile.WriteOwnerOnly(_snapshotPath, JsonSerializer.Serialize(_byHash.Values.ToList(), JoinTokenJson.Default.ListJoinTokenRecord));
        _log.SetLength(0);
        _log.Position = 0;
        _log.Flush(flushToDisk: true);
        _logLines = 0;
    }

    private void Replay()
    {
        if (!File.Exists(_logPath))
        {
            return;
        }
        var lines = File.ReadAllText(_logPath).Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0)
            {
                continue;
            }
            JoinTokenRecord? record;
            try
            {
                record = JsonSerializer.Deserialize(lines[i], JoinTokenLogJson.Default.JoinTokenRecord);
            }
            catch (JsonException) when (i == lines.Length - 1)
            {
                break; // the last line has no newline: a crash cut the append short, and its call never returned
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{_logPath} line {i + 1} is not a join token record: {e.Message}", e);
            }
            if (record is not null)
            {
                _byHash[record.Hash] = record;
            }
        }
    }

    private static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public void Dispose() => _log.Dispose();
}

internal sealed record JoinTokenRecord(string Hash, string SpiffeId, DateTimeOffset ExpiresAt, DateTimeOffset? UsedAt);

[JsonSerializable(typeof(List<JoinTokenRecord>))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class JoinTokenJson : JsonSerializerContext;

/// <summary>One record per line of <c>join-tokens.log</c>.</summary>
[JsonSerializable(typeof(JoinTokenRecord))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class JoinTokenLogJson : JsonSerializerContext;
