using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace ZeroTrustMesh.Chart.Tests.Infrastructure;

/// <summary>
/// YAML to JSON as the Kubernetes API machinery reads it (sigs.k8s.io/yaml): plain scalars are typed (null, booleans,
/// integers, floats), quoted and block scalars are strings. A plain scalar that YAML 1.1 (go-yaml) reads as a boolean but
/// YAML 1.2 as a string (<c>yes</c>, <c>on</c>, <c>n</c>, ...) is refused: it means different things to different
/// readers and must be quoted. Anchors and tags are refused too; the chart needs neither.
/// </summary>
internal static partial class Yaml
{
    public static IReadOnlyList<JsonNode?> ToJson(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return [.. stream.Documents.Select(d => Convert(d.RootNode, ""))];
    }

    public static JsonNode? ToJsonSingle(string yaml) => ToJson(yaml) switch
    {
        [var single] => single,
        var all => throw new FormatException($"expected one YAML document, found {all.Count}"),
    };

    private static JsonNode? Convert(YamlNode node, string path)
    {
        if (!node.Anchor.IsEmpty)
        {
            throw new FormatException($"{path}: YAML anchors are not used in the chart");
        }
        switch (node)
        {
            case YamlMappingNode map:
                var json = new JsonObject();
                foreach (var (key, value) in map.Children)
                {
                    var name = key is YamlScalarNode { Value: { } k } ? k : throw new FormatException($"{path}: a mapping key must be a scalar");
                    if (json.ContainsKey(name))
                    {
                        throw new FormatException($"{path}: duplicate key '{name}'");
                    }
                    json[name] = Convert(value, $"{path}.{name}");
                }
                return json;
            case YamlSequenceNode sequence:
                return new JsonArray([.. sequence.Children.Select((c, i) => Convert(c, $"{path}[{i}]"))]);
            case YamlScalarNode scalar:
                return Scalar(scalar, path);
            default:
                throw new FormatException($"{path}: unexpected YAML node {node.NodeType}");
        }
    }

    private static JsonValue? Scalar(YamlScalarNode scalar, string path)
    {
        var text = scalar.Value ?? "";
        if (!scalar.Tag.IsEmpty && scalar.Tag.Value is not "!" and not "tag:yaml.org,2002:str")
        {
            throw new FormatException($"{path}: YAML tag {scalar.Tag.Value} is not used in the chart");
        }
        if (scalar.Style != ScalarStyle.Plain)
        {
            return JsonValue.Create(text);
        }
        if (text is "" or "~" or "null" or "Null" or "NULL")
        {
            return null;
        }
        if (text is "true" or "True" or "TRUE")
        {
            return JsonValue.Create(true);
        }
        if (text is "false" or "False" or "FALSE")
        {
            return JsonValue.Create(false);
        }
        if (Yaml11Boolean().IsMatch(text))
        {
            throw new FormatException($"{path}: '{text}' is a boolean in YAML 1.1 and a string in YAML 1.2: quote it");
        }
        if (Integer().IsMatch(text) && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
        {
            return JsonValue.Create(integer);
        }
        if (Float().IsMatch(text))
        {
            return JsonValue.Create(double.Parse(text, CultureInfo.InvariantCulture));
        }
        return JsonValue.Create(text);
    }

    [GeneratedRegex("^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")]
    private static partial Regex Yaml11Boolean();

    [GeneratedRegex("^[-+]?[0-9]+$")]
    private static partial Regex Integer();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")]
    private static partial Regex Float();
}
