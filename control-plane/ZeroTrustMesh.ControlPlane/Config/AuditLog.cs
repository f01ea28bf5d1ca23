using System.Text.Json;
using System.Text.Json.Serialization;

namespace ZeroTrustMesh.ControlPlane.Config;

/// <summary>One line of <c>policy-audit.log</c>: who changed what, and the config version that carries the change.</summary>
internal sealed record AuditEntry(DateTimeOffset Time, string Version, string Action, string Actor, IReadOnlyList<string> Resources, string? Reason = null);

/// <summary>
/// <c>policy-audit.log</c> in the data directory: one JSON line per config change (policy applied, deleted or edited in
/// the directory; certificates revoked or their entries expired), appended before the change is published.
/// </summary>
internal sealed class AuditLog(string dataDir)
{
    public string Path { get; } = System.IO.Path.Combine(dataDir, "policy-audit.log");

    public void Append(AuditEntry entry) =>
        File.AppendAllText(Path, JsonSerializer.Serialize(entry, AuditJson.Default.AuditEntry) + "\n");

    /// <summary>How many changes were logged: the version a data directory from before <c>config-version.json</c> was at.</summary>
    public long Count() => File.Exists(Path) ? File.ReadLines(Path).LongCount() : 0;
}

[JsonSerializable(typeof(AuditEntry))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class AuditJson : JsonSerializerContext;
