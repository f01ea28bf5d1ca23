using System.Security.Cryptography;
using System.Text;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Policy.Kinds;
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
    /// <param name="readFile">Reads a file an ApiSpec names (<c>spec.openapi.file</c>); null where files are not served.</param>
    public static PolicyFileRead Read(string source, string text, Func<string, string>? readFile = null)
    {
        try
        {
            var read = PolicyYaml.Read(source, text);
            if (read.Errors.Length > 0)
            {
                return new PolicyFileRead(read.Documents, [], read.Errors);
            }
            var errors = new List<PolicyError>();
            var documents = new List<PolicyDocument>();
            var resources = new List<StoredResource>();
            foreach (var document in read.Documents)
            {
                // What a file reference read, kept as a digest: an edit of the file is a change of the resource.
                string? referenced = null;
                var compiled = Compile(document, readFile is null ? null : name => referenced = readFile(name), errors);
                documents.Add(compiled);
                resources.Add(new StoredResource(compiled, compiled.Text!)
                {
                    Referenced = referenced is null ? null : Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(referenced))),
                });
            }
            return errors.Count > 0
                ? new PolicyFileRead(documents, [], errors)
                : new PolicyFileRead(documents, resources, []);
        }
#pragma warning disable CA1031 // the last line of defence of a timer callback and an RPC: the file is refused, never the process
        catch (Exception e)
#pragma warning restore CA1031
        {
            return new PolicyFileRead([], [], [new PolicyError(source, $"cannot be read: {e.Message}")]);
        }
    }

    /// <summary>
    /// An ApiSpec's OpenAPI document is compiled here, once per read, so that what is stored and sent to sidecars is the
    /// compiled form while the text kept (and shown by <c>ztmctl get</c>) is what the operator wrote.
    /// </summary>
    private static PolicyDocument Compile(PolicyDocument document, Func<string, string>? readFile, List<PolicyError> errors) =>
        document.Resource is ApiSpec spec && ApiSpecCompiler.Compile(spec, readFile, new ErrorSink(errors, document.Location)) is { } compiled
            ? document with { Resource = compiled }
            : document;
}
