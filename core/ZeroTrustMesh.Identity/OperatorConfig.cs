using System.Text.Json;
using System.Text.Json.Serialization;

namespace ZeroTrustMesh.Identity;

/// <summary>
/// Where <c>ztmctl</c> finds the control plane and the operator credential, like a kubeconfig.
/// The control plane writes it on start; ztmctl reads it. Location: <c>--config</c>, else
/// <c>$ZTM_CONFIG</c>, else <c>~/.ztm/config</c>. Paths inside are absolute.
/// </summary>
public sealed record OperatorConfig(
    [property: JsonPropertyName("address")] string Address,
    [property: JsonPropertyName("trustDomain")] string TrustDomain,
    [property: JsonPropertyName("trustBundle")] string TrustBundlePath,
    [property: JsonPropertyName("certificate")] string CertificatePath,
    [property: JsonPropertyName("key")] string KeyPath)
{
    public const string EnvironmentVariable = "ZTM_CONFIG";

    public static string DefaultPath =>
        Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } fromEnv
            ? fromEnv
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".ztm", "config");

    public static OperatorConfig Load(string path)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), OperatorConfigJson.Default.OperatorConfig)
                ?? throw new InvalidDataException($"{path} is empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a valid ztm config: {e.Message}", e);
        }
    }

    public void Save(string path) => AtomicFile.WriteOwnerOnly(path, JsonSerializer.Serialize(this, OperatorConfigJson.Default.OperatorConfig));
}

[JsonSerializable(typeof(OperatorConfig))]
[JsonSourceGenerationOptions(WriteIndented = true)]
internal sealed partial class OperatorConfigJson : JsonSerializerContext;
