using System.Collections.Immutable;
using System.Text;
using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Yaml;

/// <summary>
/// Reads policy YAML (one or more documents per file, separated by <c>---</c>) into the model:
/// 1. the file is parsed with YamlDotNet's representation model (<see cref="YamlStream"/>, no reflection); any syntax
///    error, whatever YamlDotNet throws, is one error naming the file and, where known, the line;
/// 2. each document becomes a neutral node tree (mappings, lists, every scalar a string; anchors and aliases refused);
/// 3. <see cref="ResourceReader"/> reads <c>apiVersion</c>, <c>kind</c> and <c>metadata</c>, and the kind's
///    <see cref="PolicyKind"/> reads its <c>spec</c>, reporting every unknown field and wrong type with its path;
/// 4. <see cref="Load(IEnumerable{KeyValuePair{string, string}}, PolicyKinds?)"/> then validates the documents as one set.
/// Only the control plane calls this; sidecars receive resources already validated, in their typed wire form.
/// </summary>
public static class PolicyYaml
{
    /// <summary>Largest file accepted (UTF-8 bytes); policy sets are small, and a huge file is a mistake or an attack.</summary>
    public const int MaxFileBytes = 1024 * 1024;

    /// <summary>Reads one file and validates everything in it; see <see cref="Load(IEnumerable{KeyValuePair{string, string}}, PolicyKinds?)"/>.</summary>
    public static PolicySetResult Load(string source, string yaml, PolicyKinds? kinds = null) => Load([new(source, yaml)], kinds);

    /// <summary>
    /// Reads every file (source name → YAML text), then validates the documents as one set: structure, values,
    /// duplicates across files and the size limits. Every error is returned; the set is usable only if there is none.
    /// </summary>
    public static PolicySetResult Load(IEnumerable<KeyValuePair<string, string>> files, PolicyKinds? kinds = null)
    {
        kinds ??= PolicyKinds.Builtin;
        var documents = ImmutableArray.CreateBuilder<PolicyDocument>();
        var errors = ImmutableArray.CreateBuilder<PolicyError>();
        foreach (var (source, yaml) in files)
        {
            var read = Read(source, yaml, kinds);
            documents.AddRange(read.Documents);
            errors.AddRange(read.Errors);
        }
        errors.AddRange(PolicyValidator.Validate(documents, kinds));
        return new PolicySetResult(documents.ToImmutable(), errors.ToImmutable());
    }

    /// <summary>
    /// Reads one file into resources, reporting syntax, structure, unknown kinds and fields and wrong types; the values
    /// themselves are checked by <see cref="PolicyValidator"/>. A document with errors is still returned when its kind is
    /// known, so that validation can report its other problems too. Each document carries its own YAML text
    /// (<see cref="PolicyDocument.Text"/>), the way it is stored and shown. Never throws.
    /// </summary>
    public static PolicySetResult Read(string source, string yaml, PolicyKinds? kinds = null)
    {
        kinds ??= PolicyKinds.Builtin;
        var errors = new List<PolicyError>();
        var bytes = Encoding.UTF8.GetByteCount(yaml);
        if (bytes > MaxFileBytes)
        {
            errors.Add(new PolicyError(source, $"the file is {bytes:N0} bytes; at most {MaxFileBytes:N0} bytes (1 MiB) are accepted"));
            return new PolicySetResult([], [.. errors]);
        }

        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException e)
        {
            var message = e.InnerException is { } inner && e.Message.StartsWith("(Line", StringComparison.Ordinal) ? inner.Message : e.Message;
            errors.Add(new PolicyError($"{source} line {e.Start.Line}, column {e.Start.Column}", $"invalid YAML: {Trim(message)}"));
            return new PolicySetResult([], [.. errors]);
        }
        catch (ArgumentException e)
        {
            // The representation model refuses a mapping with the same key twice.
            errors.Add(new PolicyError(source, $"invalid YAML: {e.Message}"));
            return new PolicySetResult([], [.. errors]);
        }
#pragma warning disable CA1031 // YamlDotNet's scanner also throws InvalidOperationException and others on malformed input: whatever it throws, the file is refused, never the process
        catch (Exception e)
#pragma warning restore CA1031
        {
            // YamlDotNet's InvalidOperationException ("not valid due to the current state of the object") says nothing
            // to an operator; what causes it in practice is an unclosed flow collection.
            var reason = e is InvalidOperationException ? "the parser stopped here; look for an unclosed '{', '[' or quote on this line or above" : Trim(e.Message);
            errors.Add(new PolicyError($"{source}{LineOf(yaml)}", $"invalid YAML: {reason}"));
            return new PolicySetResult([], [.. errors]);
        }

        var documents = ImmutableArray.CreateBuilder<PolicyDocument>();
        for (var i = 0; i < stream.Documents.Count; i++)
        {
            var root = stream.Documents[i].RootNode;
            if (root is YamlScalarNode scalar && IsNull(scalar))
            {
                continue; // an empty document, e.g. after a trailing '---'
            }
            var sink = new ErrorSink(errors, $"{source}#{i + 1}");
            var before = errors.Count;
            var tree = ToNode(root, "", sink);
            if (errors.Count > before)
            {
                continue; // anchors: nothing more to say about this document until they are gone
            }
            if (ResourceReader.Read(kinds, tree, sink) is { } resource)
            {
                documents.Add(new PolicyDocument(source, i + 1, resource) { Text = TextOf(stream.Documents[i]) });
            }
        }
        return new PolicySetResult(documents.ToImmutable(), [.. errors]);
    }

    /// <summary>
    /// The YAML document as a node tree: mappings, lists and strings. Plain <c>~</c>, <c>null</c> and empty scalars are
    /// null; every other scalar stays the text it was written as (the kinds parse numbers and booleans themselves, with
    /// errors at their path). Anchors and aliases are refused: they let a small file expand into a huge one
    /// ("billion laughs"), and policy files do not need them.
    /// </summary>
    private static JsonNode? ToNode(YamlNode node, string path, ErrorSink errors)
    {
        if (!node.Anchor.IsEmpty)
        {
            errors.Add(path, "YAML anchors and aliases are not supported in policy files");
            return null;
        }
        switch (node)
        {
            case YamlMappingNode map:
                var obj = new JsonObject();
                foreach (var (key, value) in map.Children)
                {
                    var name = (key as YamlScalarNode)?.Value ?? key.ToString();
                    obj[name] = ToNode(value, SpecReader.Join(path, name), errors);
                }
                return obj;
            case YamlSequenceNode sequence:
                var array = new JsonArray();
                for (var i = 0; i < sequence.Children.Count; i++)
                {
                    array.Add(ToNode(sequence.Children[i], $"{path}[{i}]", errors));
                }
                return array;
            case YamlScalarNode scalar:
                return IsNull(scalar) ? null : JsonValue.Create(scalar.Value);
            default:
                return null;
        }
    }

    private static bool IsNull(YamlScalarNode node) =>
        node is { Style: ScalarStyle.Plain or ScalarStyle.Any, Value: null or "" or "~" or "null" };

    /// <summary>One document as its own YAML text, the way it is stored and shown by <c>ztmctl get</c>.</summary>
    private static string TextOf(YamlDocument document)
    {
        using var writer = new StringWriter();
        new YamlStream(document).Save(writer, assignAnchors: false);
        return writer.ToString().Replace("\n...\n", "\n", StringComparison.Ordinal).TrimEnd('.', '\n', '\r') + "\n";
    }

    /// <summary>
    /// Where the parser stopped, for errors YamlDotNet raises without a position: the line where the last part it could
    /// parse ends (the scanner's state errors carry no position of their own).
    /// </summary>
    private static string LineOf(string yaml)
    {
        var parser = new Parser(new StringReader(yaml));
        var line = 0L;
        try
        {
            while (parser.MoveNext())
            {
                line = parser.Current?.End.Line ?? line;
            }
        }
        catch (YamlException e)
        {
            line = e.Start.Line;
        }
#pragma warning disable CA1031 // the position is best effort; the error is reported either way
        catch (Exception)
#pragma warning restore CA1031
        {
        }
        return line > 0 ? $" line {line}" : "";
    }

    private static string Trim(string message) => message.TrimEnd('.');
}
