using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>One policy file read: its documents (for validation), its resources with their own YAML text, and its errors.</summary>
internal sealed record PolicyFileRead(IReadOnlyList<PolicyDocument> Documents, IReadOnlyList<StoredResource> Resources, IReadOnlyList<PolicyError> Errors);

/// <summary>
/// Reads one policy file, whatever it holds: the reader's errors come back as errors, and so does anything it throws
/// (YamlDotNet's scanner throws more than <see cref="YamlException"/> on some malformed input), named by the file and
/// the line where the YAML stops parsing. Nothing read from the directory or sent to Apply escapes as an exception.
/// </summary>
internal static class PolicyFileReader
{
    public static PolicyFileRead Read(string source, string text)
    {
        try
        {
            var read = PolicyYaml.Read(source, text);
            if (read.Errors.Length > 0)
            {
                return new PolicyFileRead(read.Documents, [], read.Errors);
            }
            var texts = SplitDocuments(text);
            // Paired by document number: the reader skips empty documents, the split keeps them.
            return new PolicyFileRead(read.Documents, [.. read.Documents.Select(d => new StoredResource(d, texts[d.Index - 1]))], []);
        }
        catch (Exception e)
        {
            return new PolicyFileRead([], [], [new PolicyError(Locate(source, text), $"invalid YAML: {Describe(e)}")]);
        }
    }

    /// <summary>Each YAML document of a file as its own text, the way it is stored and sent.</summary>
    internal static IReadOnlyList<string> SplitDocuments(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return [.. stream.Documents.Select(d =>
        {
            using var writer = new StringWriter();
            new YamlStream(d).Save(writer, assignAnchors: false);
            return writer.ToString().Replace("\n...\n", "\n", StringComparison.Ordinal).TrimEnd('.', '\n', '\r') + "\n";
        })];
    }

    /// <summary><c>file line N</c>: where the parser stopped, or the end of the last part it could read.</summary>
    private static string Locate(string source, string text)
    {
        var parser = new Parser(new StringReader(text));
        var last = Mark.Empty;
        try
        {
            while (parser.MoveNext())
            {
                last = parser.Current!.End;
            }
        }
        catch (YamlException e)
        {
            return $"{source} line {e.Start.Line}, column {e.Start.Column}";
        }
        catch (Exception)
        {
            // The scanner's own state errors carry no position: the last thing parsed is the best clue.
        }
        return last.Line > 0 ? $"{source} line {last.Line}" : source;
    }

    private static string Describe(Exception e) => e switch
    {
        YamlException { InnerException: { } inner } => inner.Message.TrimEnd('.'),
        YamlException yaml => yaml.Message.TrimEnd('.'),
        // Not a parse error the reader reports, so it says nothing useful itself ("Operation is not valid due to...").
        _ => "it cannot be parsed after this line (is a '{' or '[' left open?)",
    };
}
