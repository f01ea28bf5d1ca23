using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Kubernetes;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.LeastPrivilege;

/// <summary>A would-deny request: "caller METHOD path", and when.</summary>
internal sealed record AuditSample(DateTimeOffset At, string Request);

/// <summary>
/// One AUDIT policy's counts for one content of it (<paramref name="Generation"/>), counted since
/// <paramref name="Since"/>; what <c>ztmctl policy audit-report</c> shows.
/// </summary>
/// <param name="Recent">The latest would-deny requests, newest first (at most <see cref="AuditCounts.RecentSamples"/>).</param>
internal sealed record AuditPolicyRecord(
    string Policy,
    string Generation,
    DateTimeOffset Since,
    long Requests,
    long WouldDeny,
    DateTimeOffset? FirstSeen,
    DateTimeOffset? LastSeen,
    DateTimeOffset? LastWouldDeny,
    List<AuditSample> Recent)
{
    public static AuditPolicyRecord Empty(string policy, string generation, DateTimeOffset since) =>
        new(policy, generation, since, 0, 0, null, null, null, []);

    /// <summary>
    /// Two counts of one policy: of one content, added up (counting began at the earlier start); of two contents, the
    /// one whose counting began later, as that content replaced the other.
    /// </summary>
    public static AuditPolicyRecord Merge(AuditPolicyRecord a, AuditPolicyRecord b) =>
        a.Generation != b.Generation ? (b.Since > a.Since ? b : a)
        : new(a.Policy, a.Generation, Min(a.Since, b.Since)!.Value, a.Requests + b.Requests, a.WouldDeny + b.WouldDeny,
            Min(a.FirstSeen, b.FirstSeen), Max(a.LastSeen, b.LastSeen), Max(a.LastWouldDeny, b.LastWouldDeny),
            [.. a.Recent.Concat(b.Recent).OrderByDescending(s => s.At).Take(AuditCounts.RecentSamples)]);

    private static DateTimeOffset? Min(DateTimeOffset? a, DateTimeOffset? b) => a is null ? b : b is null ? a : a < b ? a : b;

    private static DateTimeOffset? Max(DateTimeOffset? a, DateTimeOffset? b) => a is null ? b : b is null ? a : a > b ? a : b;
}

/// <summary>The stored AUDIT counts: one record per policy; <paramref name="LeftOut"/> policies dropped to stay within bounds.</summary>
internal sealed record AuditCountsDocument(int Version, List<AuditPolicyRecord> Policies, long LeftOut)
{
    public static readonly AuditCountsDocument None = new(1, [], 0);

    /// <summary>
    /// These counts with <paramref name="deltas"/> added; at most <paramref name="maxPolicies"/> policies, the least
    /// recently seen left out (and counted) beyond that.
    /// </summary>
    public AuditCountsDocument With(IEnumerable<AuditPolicyRecord> deltas, int maxPolicies)
    {
        var merged = Policies.ToDictionary(r => r.Policy, StringComparer.Ordinal);
        foreach (var delta in deltas)
        {
            merged[delta.Policy] = merged.TryGetValue(delta.Policy, out var stored) ? AuditPolicyRecord.Merge(stored, delta) : delta;
        }
        var kept = merged.Values.OrderByDescending(r => r.LastSeen ?? r.Since).ThenBy(r => r.Policy, StringComparer.Ordinal).ToList();
        var over = Math.Max(0, kept.Count - maxPolicies);
        return new AuditCountsDocument(1, [.. kept.Take(kept.Count - over)], LeftOut + over);
    }
}

/// <summary>
/// Where the AUDIT counts are kept beyond one process and shared between replicas: standalone the data directory
/// (<see cref="FileAuditCountStore"/>), in Kubernetes one ConfigMap every replica adds to (<see cref="ConfigMapAuditCountStore"/>).
/// </summary>
internal interface IAuditCountStore
{
    /// <summary>Where it is, for messages.</summary>
    string Location { get; }

    /// <summary>The stored counts (none: <see cref="AuditCountsDocument.None"/>).</summary>
    /// <exception cref="InvalidDataException">They are there but do not parse.</exception>
    /// <exception cref="IOException">They cannot be read.</exception>
    Task<AuditCountsDocument> LoadAsync(CancellationToken cancellation);

    /// <summary>
    /// Replaces the stored counts with <paramref name="change"/> of them, as one step against other writers; unreadable
    /// stored counts are replaced.
    /// </summary>
    /// <exception cref="IOException">They cannot be written.</exception>
    Task UpdateAsync(Func<AuditCountsDocument, AuditCountsDocument> change, CancellationToken cancellation);
}

/// <summary>Standalone: <c>audit-counts.json</c> in the data directory, replaced whole (one process writes it).</summary>
internal sealed class FileAuditCountStore(string dataDir) : IAuditCountStore
{
    public const string FileName = "audit-counts.json";

    private readonly string _path = Path.Combine(dataDir, FileName);

    public string Location => _path;

    public Task<AuditCountsDocument> LoadAsync(CancellationToken cancellation)
    {
        try
        {
            return Task.FromResult(File.Exists(_path)
                ? JsonSerializer.Deserialize(File.ReadAllText(_path), AuditCountsJson.Default.AuditCountsDocument) ?? throw new InvalidDataException($"{_path} is empty")
                : AuditCountsDocument.None);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{_path} is not AUDIT counts: {e.Message}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"cannot read {_path}: {e.Message}", e);
        }
    }

    public async Task UpdateAsync(Func<AuditCountsDocument, AuditCountsDocument> change, CancellationToken cancellation)
    {
        AuditCountsDocument stored;
        try
        {
            stored = await LoadAsync(cancellation);
        }
        catch (InvalidDataException)
        {
            stored = AuditCountsDocument.None;
        }
        try
        {
            AtomicFile.WriteOwnerOnly(_path, JsonSerializer.Serialize(change(stored), AuditCountsJson.Default.AuditCountsDocument));
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"cannot write {_path}: {e.Message}", e);
        }
    }
}

/// <summary>
/// Kubernetes: ConfigMap <c>ztm-audit-counts</c> in the control plane's namespace, the counts gzipped in binaryData
/// <c>counts.json.gz</c>, a summary for <c>kubectl</c> in data. Every replica adds what it counted: read, add, write over
/// the resourceVersion read; when another replica wrote first (409) it reads again after a short random pause, so no
/// replica's counts are lost or counted twice (the pattern of <see cref="Audit.ConfigMapCheckpointStore"/>). Counts are
/// sums, so no replica has to lead, and a replica that stops takes none with it. When they do not fit
/// <see cref="ConfigMaps.MaxPayloadBytes"/>, the least recently seen policies are left out (counted) until they do.
/// </summary>
internal sealed class ConfigMapAuditCountStore(IKubernetes client, string @namespace) : IAuditCountStore
{
    public const string Name = "ztm-audit-counts";
    public const string CountsKey = "counts.json.gz";
    private const int MaxAttempts = 16;

    public string Location => $"ConfigMap {@namespace}/{Name}";

    public async Task<AuditCountsDocument> LoadAsync(CancellationToken cancellation) => Parse(await ReadAsync(cancellation));

    public async Task UpdateAsync(Func<AuditCountsDocument, AuditCountsDocument> change, CancellationToken cancellation)
    {
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            var map = await ReadAsync(cancellation);
            AuditCountsDocument stored;
            try
            {
                stored = Parse(map);
            }
            catch (InvalidDataException)
            {
                stored = AuditCountsDocument.None;
            }
            var (next, zipped) = Fit(change(stored));
            var written = new V1ConfigMap
            {
                ApiVersion = "v1",
                Kind = "ConfigMap",
                Metadata = new V1ObjectMeta
                {
                    Name = Name,
                    NamespaceProperty = @namespace,
                    ResourceVersion = map?.Metadata?.ResourceVersion,
                    Labels = new Dictionary<string, string> { [SecretCaStore.ManagedByLabel] = SecretCaStore.ManagedBy },
                },
                Data = new Dictionary<string, string>
                {
                    ["policies"] = next.Policies.Count.ToString(CultureInfo.InvariantCulture),
                    ["leftOut"] = next.LeftOut.ToString(CultureInfo.InvariantCulture),
                },
                BinaryData = new Dictionary<string, byte[]> { [CountsKey] = zipped },
            };
            try
            {
                if (await ConfigMaps.TryWriteAsync(client, written, cancellation) is not null)
                {
                    return;
                }
            }
            catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
            {
                throw new IOException($"cannot write {Location}: {ConfigMaps.Describe(e)}", e);
            }
            // Another replica wrote first: a short random pause, growing with each attempt, so that they stop colliding.
            await Task.Delay(Random.Shared.Next(1, 10 * attempt), cancellation);
        }
        throw new IOException($"{Location} kept changing under {MaxAttempts} attempts to write it; tried again at the next flush");
    }

    /// <summary>The counts, with the least recently seen policies left out until they fit a ConfigMap.</summary>
    internal static (AuditCountsDocument Counts, byte[] Zipped) Fit(AuditCountsDocument counts)
    {
        while (true)
        {
            var zipped = ConfigMaps.Zip(counts, AuditCountsJson.Default.AuditCountsDocument);
            if (zipped.Length <= ConfigMaps.MaxPayloadBytes || counts.Policies.Count <= 1)
            {
                return (counts, zipped);
            }
            counts = counts.With([], counts.Policies.Count - Math.Max(1, counts.Policies.Count / 10));
        }
    }

    private async Task<V1ConfigMap?> ReadAsync(CancellationToken cancellation)
    {
        try
        {
            return await ConfigMaps.ReadAsync(client, @namespace, Name, cancellation);
        }
        catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
        {
            throw new IOException($"cannot read {Location}: {ConfigMaps.Describe(e)}", e);
        }
    }

    private AuditCountsDocument Parse(V1ConfigMap? map)
    {
        if (map is null)
        {
            return AuditCountsDocument.None;
        }
        return ConfigMaps.UnzipKey(map, CountsKey, AuditCountsJson.Default.AuditCountsDocument, Location, "AUDIT counts");
    }
}

[JsonSerializable(typeof(AuditCountsDocument))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class AuditCountsJson : JsonSerializerContext;
