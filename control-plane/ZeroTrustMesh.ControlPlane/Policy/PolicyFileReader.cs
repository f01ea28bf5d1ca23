using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>One policy file read: its documents (for validation), its resources with their own YAML text, and its errors.</summary>
internal sealed record PolicyFileRead(IReadOnlyList<PolicyDocument> Documents, IReadOnlyList<StoredResource> Resources, IReadOnlyList<PolicyError> Errors);

/// <summary>
/// Reads one policy file, whatever it holds. <see cref="PolicyYaml.Read"/> reports every syntax problem as an error with
/// the file and line and does not throw; should anything still escape it, it comes back as an error naming the file too.
/// Nothing read from the directory or sent to Apply escapes as an exception.
/// </summary>
internal static class PolicyFileReader
{
    public static PolicyFileRead Read(string source, string text)
    {
        try
        {
            var read = PolicyYaml.Read(source, text);
            return read.Errors.Length > 0
                ? new PolicyFileRead(read.Documents, [], read.Errors)
                : new PolicyFileRead(read.Documents, [.. read.Documents.Select(d => new StoredResource(d, d.Text!))], []);
        }
#pragma warning disable CA1031 // the last line of defence of a timer callback and an RPC: the file is refused, never the process
        catch (Exception e)
#pragma warning restore CA1031
        {
            return new PolicyFileRead([], [], [new PolicyError(source, $"cannot be read: {e.Message}")]);
        }
    }
}
