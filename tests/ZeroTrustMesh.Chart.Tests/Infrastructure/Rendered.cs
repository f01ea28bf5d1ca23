using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace ZeroTrustMesh.Chart.Tests.Infrastructure;

/// <summary>One object of a rendered chart: its JSON and the template it came from.</summary>
internal sealed record RenderedObject(string Source, JsonObject Json)
{
    public string ApiVersion => (string)Json["apiVersion"]!;

    public string Kind => (string)Json["kind"]!;

    public string Name => (string)Json["metadata"]!["name"]!;

    public string? Namespace => (string?)Json["metadata"]!["namespace"];

    public override string ToString() => $"{Kind} {Name} ({Source})";
}

/// <summary>The objects <c>helm template</c> printed, each document parsed as Kubernetes reads YAML.</summary>
internal sealed partial class RenderedChart(IReadOnlyList<RenderedObject> objects)
{
    public IReadOnlyList<RenderedObject> Objects { get; } = objects;

    public static async Task<RenderedChart> RenderAsync(string chart, string @namespace = "ztm-system", string? valuesYaml = null)
    {
        var result = (await Helm.TemplateAsync(chart, @namespace, valuesYaml)).EnsureSuccess("helm template");
        return Parse(result.Output);
    }

    public static RenderedChart Parse(string manifest)
    {
        var objects = new List<RenderedObject>();
        foreach (var document in DocumentSeparator().Split(manifest).Where(d => !string.IsNullOrWhiteSpace(d)))
        {
            var source = document.Split('\n').FirstOrDefault(l => l.StartsWith("# Source: ", StringComparison.Ordinal))?["# Source: ".Length..] ?? "?";
            JsonNode? json;
            try
            {
                json = Yaml.ToJsonSingle(document);
            }
            catch (Exception e) when (e is FormatException or YamlDotNet.Core.YamlException)
            {
                throw new FormatException($"{source}: {e.Message}", e);
            }
            if (json is null)
            {
                continue; // a template that rendered nothing but its Source comment
            }
            objects.Add(new RenderedObject(source, json as JsonObject ?? throw new FormatException($"{source}: not a mapping")));
        }
        return new RenderedChart(objects);
    }

    public RenderedObject Single(string kind, string name) =>
        Objects.SingleOrDefault(o => o.Kind == kind && o.Name == name)
        ?? throw new InvalidOperationException($"no {kind} {name} among: {string.Join(", ", Objects)}");

    public IEnumerable<RenderedObject> OfKind(string kind) => Objects.Where(o => o.Kind == kind);

    /// <summary>The object as <typeparamref name="T"/>, deserialized strictly (see <see cref="KubernetesModels"/>).</summary>
    public T Get<T>(string kind, string name) => (T)KubernetesModels.Deserialize(Single(kind, name));

    [GeneratedRegex(@"^---[ \t]*$", RegexOptions.Multiline)]
    private static partial Regex DocumentSeparator();
}
