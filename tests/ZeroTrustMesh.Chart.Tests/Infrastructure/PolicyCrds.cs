using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using k8s.Models;

namespace ZeroTrustMesh.Chart.Tests.Infrastructure;

/// <summary>The policy CRDs of a rendered chart, by kind, with their schemas as JSON Schemas to validate documents.</summary>
internal sealed class PolicyCrds
{
    private readonly Dictionary<string, JsonSchema> _schemas = new(StringComparer.Ordinal);

    private PolicyCrds(IReadOnlyList<(RenderedObject Rendered, V1CustomResourceDefinition Crd)> all)
    {
        All = all;
        foreach (var (rendered, crd) in all)
        {
            var jsonSchema = CrdSchema.ToJsonSchema(OpenApiSchema(rendered));
            _schemas[crd.Spec.Names.Kind] = JsonSchema.FromText(jsonSchema.ToJsonString(), baseUri: new Uri($"https://ztm.test/crds/{crd.Metadata.Name}/{Guid.NewGuid():N}"));
        }
    }

    public IReadOnlyList<(RenderedObject Rendered, V1CustomResourceDefinition Crd)> All { get; }

    public static async Task<PolicyCrds> FromDefaultRenderAsync() => From(await Renders.Default);

    public static PolicyCrds From(RenderedChart chart) => new(
    [
        .. chart.OfKind("CustomResourceDefinition")
            .Where(o => o.Name.EndsWith(".security.ztm.dev", StringComparison.Ordinal))
            .Select(o => (o, KubernetesModels.Deserialize<V1CustomResourceDefinition>(o.Json, o.ToString()))),
    ]);

    /// <summary>The raw <c>openAPIV3Schema</c> of the CRD's only version.</summary>
    public static JsonObject OpenApiSchema(RenderedObject crd) =>
        crd.Json["spec"]!["versions"]!.AsArray().Single()!["schema"]!["openAPIV3Schema"]!.AsObject();

    public (RenderedObject Rendered, V1CustomResourceDefinition Crd) ForKind(string kind) =>
        All.Single(c => c.Crd.Spec.Names.Kind == kind);

    /// <summary>Every way <paramref name="document"/> fails its kind's CRD schema, as "location: message"; empty when valid.</summary>
    public List<string> Validate(JsonNode document)
    {
        var kind = (string?)document["kind"];
        if (kind is null || !_schemas.TryGetValue(kind, out var schema))
        {
            return [$"no CRD for kind '{kind}'"];
        }
        using var parsed = JsonDocument.Parse(document.ToJsonString());
        var results = schema.Evaluate(parsed.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List, RequireFormatValidation = true });
        if (results.IsValid)
        {
            return [];
        }
        // Each failing keyword once, at the instance location, with the schema path that failed (a junctor's branches
        // report their own keywords; the junctor itself reports only that it failed).
        // A oneOf that more than one branch matches reports no message: the innermost failing place is named instead.
        var failed = (results.Details ?? []).Where(d => !d.IsValid).ToList();
        var paths = failed.Select(d => d.EvaluationPath.ToString()).ToList();
        var errors = failed
            .SelectMany(d => d.Errors is { Count: > 0 }
                ? d.Errors.Select(e => $"{d.InstanceLocation}: {e.Value} [{d.EvaluationPath}/{e.Key}]")
                : paths.Any(p => p.StartsWith(d.EvaluationPath + "/", StringComparison.Ordinal)) ? [] : [$"{d.InstanceLocation}: invalid [{d.EvaluationPath}]"])
            .ToList();
        return errors.Count > 0 ? errors : ["invalid (no details)"];
    }
}
