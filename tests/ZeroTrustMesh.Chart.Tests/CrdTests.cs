using System.Text.Json.Nodes;
using k8s.Models;
using ZeroTrustMesh.Chart.Tests.Infrastructure;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Chart.Tests;

public sealed class CrdTests
{
    [HelmFact]
    public async Task Each_builtin_policy_kind_has_one_crd_and_each_crd_is_a_builtin_kind()
    {
        var crds = await PolicyCrds.FromDefaultRenderAsync();
        Assert.Equal(
            PolicyKinds.Builtin.All.Select(k => k.Name).Order(StringComparer.Ordinal),
            crds.All.Select(c => c.Crd.Spec.Names.Kind).Order(StringComparer.Ordinal));
        var chart = await Renders.Default;
        Assert.Equal(crds.All.Count, chart.OfKind("CustomResourceDefinition").Count());
    }

    [HelmFact]
    public async Task Each_crd_serves_security_ztm_dev_v1_with_kubectls_names_status_and_printer_columns()
    {
        var crds = await PolicyCrds.FromDefaultRenderAsync();
        var shortNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (_, crd) in crds.All)
        {
            var names = crd.Spec.Names;
            var kind = PolicyKinds.Builtin.Find(names.Kind)!;
            Assert.Equal($"{names.Plural}.security.ztm.dev", crd.Metadata.Name);
            Assert.Same(kind, PolicyKinds.Builtin.Find(names.Plural)); // the plural ztmctl and kubectl accept alike
            Assert.Equal((names.Kind.ToLowerInvariant(), names.Kind + "List"), (names.Singular, names.ListKind));
            Assert.Equal("Namespaced", crd.Spec.Scope);
            Assert.Contains("ztm", names.Categories);
            Assert.All(names.ShortNames, s => Assert.True(s.StartsWith("ztm", StringComparison.Ordinal) && shortNames.Add(s), $"{crd.Metadata.Name}: short name {s} is not unique or not ztm-prefixed"));
            Assert.NotEmpty(names.ShortNames);
            var version = Assert.Single(crd.Spec.Versions);
            Assert.Equal(PolicyResource.ApiVersion, $"{crd.Spec.Group}/{version.Name}");
            Assert.True(version.Served && version.Storage);
            Assert.NotNull(version.Subresources.Status);
            Assert.Null(version.Subresources.Scale);
            Assert.Equal(["Accepted", "Age"], version.AdditionalPrinterColumns.TakeLast(2).Select(c => c.Name));
            Assert.Equal("keep", crd.Metadata.Annotations["helm.sh/resource-policy"]);
        }
    }

    [HelmFact]
    public async Task Every_crd_schema_is_structural()
    {
        foreach (var (rendered, _) in (await PolicyCrds.FromDefaultRenderAsync()).All)
        {
            var problems = CrdSchema.StructuralProblems(PolicyCrds.OpenApiSchema(rendered));
            Assert.True(problems.Count == 0, $"{rendered.Name}:\n{Text.Lines(problems)}");
        }
    }

    [Fact]
    public void The_structural_check_finds_what_the_api_server_refuses()
    {
        var schema = JsonNode.Parse("""
            {"type":"object","properties":{
              "metadata":{"type":"object","properties":{"labels":{"type":"object"}}},
              "untyped":{"description":"no type"},
              "both":{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":{"type":"string"}},
              "unique":{"type":"array","items":{"type":"string"},"uniqueItems":true},
              "junctor":{"type":"object","properties":{"a":{"type":"string"}},"oneOf":[{"type":"object"},{"required":["b"]}]},
              "ref":{"$ref":"#/definitions/x","type":"string"},
              "list":{"type":"array"},
              "enum":{"type":"string","enum":["A"],"default":"B"},
              "typo":{"type":"string","maxlength":3}
            },"required":["missing"]}
            """)!.AsObject();
        var problems = string.Join('\n', CrdSchema.StructuralProblems(schema));
        foreach (var expected in new[]
        {
            "metadata.labels: only metadata.name", "untyped: no type", "both: properties and additionalProperties",
            "unique: 'uniqueItems' is not allowed", "junctor.oneOf: 'type' is not allowed", "junctor.oneOf: names 'b'",
            "ref: '$ref' is not allowed", "list: an array needs items", "enum: default \"B\"", "typo: 'maxlength' is not",
            "<root>: requires 'missing'",
        })
        {
            Assert.Contains(expected, problems, StringComparison.Ordinal);
        }
    }

    [HelmFact]
    public async Task Printer_columns_point_at_fields_the_schema_declares()
    {
        foreach (var (rendered, crd) in (await PolicyCrds.FromDefaultRenderAsync()).All)
        {
            var schema = PolicyCrds.OpenApiSchema(rendered);
            foreach (var column in crd.Spec.Versions.Single().AdditionalPrinterColumns)
            {
                // .spec.a.b, .spec.list[*].field, .status.conditions[?(@.type=="X")].status
                var node = (JsonNode?)schema;
                foreach (var segment in column.JsonPath.TrimStart('.').Split('.').Where(s => !s.StartsWith("type==", StringComparison.Ordinal)))
                {
                    var name = segment.Split('[')[0];
                    node = name == "metadata" ? null : node?["properties"]?[name];
                    if (node is not null && segment.Contains('[', StringComparison.Ordinal))
                    {
                        node = node["items"];
                    }
                    if (name == "metadata")
                    {
                        break;
                    }
                }
                Assert.True(node is not null || column.JsonPath.StartsWith(".metadata.", StringComparison.Ordinal), $"{crd.Metadata.Name}: column {column.Name} points at {column.JsonPath}, which the schema does not declare");
                if (node is not null)
                {
                    Assert.Equal(column.Type, (string?)node["type"]);
                }
            }
        }
    }

    [HelmFact]
    public async Task Every_field_a_crd_declares_is_one_the_policy_model_reads()
    {
        foreach (var (rendered, crd) in (await PolicyCrds.FromDefaultRenderAsync()).All)
        {
            var schema = PolicyCrds.OpenApiSchema(rendered);
            var spec = CrdSchema.Maximal(schema["properties"]!["spec"]!.AsObject(), "spec");
            var document = new JsonObject
            {
                ["apiVersion"] = PolicyResource.ApiVersion,
                ["kind"] = crd.Spec.Names.Kind,
                ["metadata"] = new JsonObject { ["name"] = "everything", ["namespace"] = "shop" },
                ["spec"] = spec,
            };
            var errors = new List<PolicyError>();
            var resource = ResourceReader.Read(PolicyKinds.Builtin, document, new ErrorSink(errors, crd.Metadata.Name));
            Assert.True(errors.Count == 0, $"{crd.Metadata.Name} declares what {crd.Spec.Names.Kind}'s reader refuses:\n{Text.Lines(errors.Select(e => e.ToString()))}{document}");
            Assert.Equal(crd.Spec.Names.Kind, resource!.Kind);
        }
    }

    [HelmFact]
    public async Task A_spec_is_required_exactly_where_the_model_requires_one()
    {
        foreach (var (rendered, crd) in (await PolicyCrds.FromDefaultRenderAsync()).All)
        {
            var required = PolicyCrds.OpenApiSchema(rendered)["required"]?.AsArray().Select(r => (string)r!) ?? [];
            Assert.Equal(PolicyKinds.Builtin.Find(crd.Spec.Names.Kind)!.RequiresSpec, required.Contains("spec"));
        }
    }

    [HelmFact]
    public async Task Crds_are_left_out_with_crds_install_false()
    {
        var chart = await RenderedChart.RenderAsync(Helm.ChartDirectory, valuesYaml: "crds: {install: false}");
        Assert.Empty(chart.OfKind("CustomResourceDefinition"));
        Assert.NotEmpty(chart.OfKind("Deployment"));
    }
}
