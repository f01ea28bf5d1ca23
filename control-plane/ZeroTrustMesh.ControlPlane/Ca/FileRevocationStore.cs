using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary><c>revocations.json</c> in the data directory: 0600, replaced atomically at every change, read once at start.</summary>
internal sealed class FileRevocationStore : IRevocationStore
{
    private readonly Lock _gate = new();
    private RevocationList _current;

    public FileRevocationStore(ControlPlaneOptions options)
    {
        Path = System.IO.Path.Combine(options.DataDir, "revocations.json");
        _current = Load(Path);
    }

    public string Path { get; }

    public RevocationList Current => Volatile.Read(ref _current);

    public event Action<RevocationChange>? Changed;

    public bool Revise(Func<RevocationList, (RevocationList Next, IReadOnlyList<string> Subjects)> change, string action, string actor, string? reason)
    {
        lock (_gate)
        {
            var current = Current;
            var (next, subjects) = change(current);
            if (ReferenceEquals(next, current))
            {
                return false;
            }
            Save(next);
            Volatile.Write(ref _current, next);
            Changed?.Invoke(new RevocationChange(next, action, actor, subjects, reason));
            return true;
        }
    }

    private static RevocationList Load(string path) => File.Exists(path) ? Parse(File.ReadAllText(path), path) : RevocationList.Empty;

    private void Save(RevocationList list) => AtomicFile.WriteOwnerOnly(Path, Serialize(list));

    /// <summary>A revocation list as stored (JSON); the Kubernetes store keeps the same text in its ConfigMap.</summary>
    public static string Serialize(RevocationList list) =>
        JsonSerializer.Serialize(
            [.. list.Entries.Select(e => new RevocationRecord(e.Serial, e.Id?.Value, e.IssuedBefore, e.RevokedAt, e.ExpiresAt, e.Reason))],
            RevocationJson.Default.ListRevocationRecord);

    /// <summary>Reads what <see cref="Serialize"/> wrote.</summary>
    /// <exception cref="JsonException">Not the JSON of a revocation list.</exception>
    /// <exception cref="InvalidDataException">Empty.</exception>
    public static RevocationList Parse(string json, string source = "the revocation list")
    {
        var records = JsonSerializer.Deserialize(json, RevocationJson.Default.ListRevocationRecord)
            ?? throw new InvalidDataException($"{source} is empty");
        return new RevocationList(records.Select(r => new Revocation(
            r.Serial, r.SpiffeId is null ? null : SpiffeId.Parse(r.SpiffeId), r.IssuedBefore, r.RevokedAt, r.ExpiresAt, r.Reason ?? "")));
    }
}

internal sealed record RevocationRecord(string? Serial, string? SpiffeId, DateTimeOffset? IssuedBefore, DateTimeOffset RevokedAt, DateTimeOffset ExpiresAt, string? Reason);

[JsonSerializable(typeof(List<RevocationRecord>))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class RevocationJson : JsonSerializerContext;
