using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;
using ZeroTrustMesh.Policy.Kinds;

namespace ZeroTrustMesh.Policy.Tests.ApiSpec;

/// <summary>
/// The ApiSpec validator (<see cref="ApiSchema"/>, JsonSchema.Net 8.0.5 with the mesh's settings) against the official
/// JSON-Schema-Test-Suite as Debian ships it (<c>libtest-json-schema-acceptance-perl</c>, installed by
/// <c>scripts/install-deps.sh</c>): every required draft 2020-12 test, and the draft 4 tests of keywords that OpenAPI 3.0's
/// Schema Object has, through <see cref="OpenApi30Schema"/> as a 3.0 document's schemas go. What is left out is listed
/// below with its reason; the optional/ folders are not required by the suite. Every test is also run through the
/// compiled subset alone (<see cref="CompiledSchema"/>) wherever the schema is within it and the compiled form decides.
/// </summary>
public sealed class JsonSchemaConformanceTests(ITestOutputHelper output)
{
    /// <summary>Required draft 2020-12 files left out, and why.</summary>
    private static readonly Dictionary<string, string> Draft202012Exclusions = new(StringComparer.Ordinal)
    {
        ["refRemote.json"] = "references to http://localhost:1234/…: an ApiSpec schema is self-contained and the sidecar never fetches a schema",
    };

    /// <summary>
    /// Draft 4 files left out: keywords the OpenAPI 3.0 Schema Object does not have (so a 3.0 document cannot use them),
    /// or behaviour 3.0 does not take from draft 4.
    /// </summary>
    private static readonly Dictionary<string, string> Draft4Exclusions = new(StringComparer.Ordinal)
    {
        ["additionalItems.json"] = "additionalItems is not in the OpenAPI 3.0 Schema Object",
        ["definitions.json"] = "validates against the draft 4 meta-schema (fetched by $schema); 3.0 schemas live under components, not definitions",
        ["dependencies.json"] = "dependencies is not in the OpenAPI 3.0 Schema Object",
        ["id.json"] = "id (base URI changes) is not in the OpenAPI 3.0 Schema Object",
        ["patternProperties.json"] = "patternProperties is not in the OpenAPI 3.0 Schema Object",
        ["refRemote.json"] = "remote references: the sidecar never fetches a schema (and 3.0 documents are compiled self-contained)",
        ["infinite-loop-detection.json"] = "uses definitions with $ref siblings in ways 3.0 does not have",
    };

    /// <summary>Draft 4 test groups (file: description) left out within files that apply.</summary>
    private static readonly Dictionary<string, string> Draft4GroupExclusions = new(StringComparer.Ordinal)
    {
        ["ref.json: remote ref, containing refs itself"] = "refers to the draft 4 meta-schema by URL: the sidecar never fetches a schema",
        ["ref.json: Location-independent identifier"] = "id (plain-name fragments) is not in the OpenAPI 3.0 Schema Object",
        ["ref.json: id must be resolved against nearest parent, not just immediate parent"] = "id is not in the OpenAPI 3.0 Schema Object",
        ["type.json: multiple types can be specified in an array"] = "type is a single string in OpenAPI 3.0 (nullable says null)",
        ["type.json: type as array with one item"] = "type is a single string in OpenAPI 3.0",
        ["type.json: type: array or object"] = "type is a single string in OpenAPI 3.0",
        ["type.json: type: array, object or null"] = "type is a single string in OpenAPI 3.0",
    };

    private const string RemoteReason = "refers to the suite's remote documents (http://localhost:1234/…): an ApiSpec schema is self-contained and never fetched";

    private const string TupleReason = "items as an array (tuples) is not in OpenAPI 3.0: items must be a schema";

    private static readonly string? Suite = FindSuite();

    public static bool SuiteMissing => Suite is null;

    [SchemaSuiteFact]
    public void Every_required_draft2020_12_test_passes() =>
        Run("draft2020-12", Draft202012Exclusions, new Dictionary<string, string>(), schema => schema, minimumDecided: 500);

    [SchemaSuiteFact]
    public void Draft4_tests_pass_through_the_OpenAPI_30_adapter_where_they_apply() =>
        Run("draft4", Draft4Exclusions, Draft4GroupExclusions, OpenApi30Schema.ToDraft202012, minimumDecided: 300);

    private void Run(string draft, Dictionary<string, string> excluded, Dictionary<string, string> excludedGroups, Func<JsonNode?, JsonNode?> adapt, int minimumDecided)
    {
        var failures = new List<string>();
        int passed = 0, files = 0, compiledGroups = 0, decided = 0;
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Suite!, draft), "*.json").Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(file);
            if (excluded.TryGetValue(name, out var reason))
            {
                output.WriteLine($"excluded {draft}/{name}: {reason}");
                continue;
            }
            files++;
            foreach (var group in JsonNode.Parse(File.ReadAllText(file))!.AsArray())
            {
                var description = (string)group!["description"]!;
                if (excludedGroups.TryGetValue($"{name}: {description}", out reason)
                    || (group["schema"]!.ToJsonString().Contains("localhost:1234", StringComparison.Ordinal) && (reason = RemoteReason) is not null)
                    || (draft == "draft4" && group["schema"]!.ToJsonString().Contains("\"items\":[", StringComparison.Ordinal) && (reason = TupleReason) is not null))
                {
                    output.WriteLine($"excluded {draft}/{name} '{description}': {reason}");
                    continue;
                }
                ApiSchema schema;
                try
                {
                    schema = ApiSchema.Compile(adapt(group["schema"])!.ToJsonString());
                }
                catch (ArgumentException e)
                {
                    failures.Add($"{name} '{description}': does not compile: {e.Message}");
                    continue;
                }
                compiledGroups += schema.IsCompiled ? 1 : 0;
                foreach (var test in group["tests"]!.AsArray())
                {
                    using var data = JsonDocument.Parse(test!["data"]?.ToJsonString() ?? "null");
                    var expected = (bool)test["valid"]!;
                    // The compiled subset, on its own: where it decides, it must decide as the suite says.
                    if (schema.CheckCompiled(data.RootElement) is { } outcome and not SchemaOutcome.Unsure)
                    {
                        decided++;
                        if ((outcome == SchemaOutcome.Valid) != expected)
                        {
                            failures.Add($"{name} '{description}' / '{test["description"]}': the compiled form says {outcome}, expected {(expected ? "valid" : "invalid")}");
                        }
                    }
                    if (schema.Validate(data.RootElement, null) == expected)
                    {
                        passed++;
                    }
                    else
                    {
                        failures.Add($"{name} '{description}' / '{test["description"]}': expected {(expected ? "valid" : "invalid")}");
                    }
                }
            }
        }
        output.WriteLine($"{draft}: {passed} tests passed in {files} files; {compiledGroups} schemas within the compiled subset, which decided {decided} tests on its own");
        Assert.True(failures.Count == 0, $"{failures.Count} failed:\n" + string.Join("\n", failures));
        Assert.True(passed > 100, $"only {passed} tests ran: is the suite complete?");
        Assert.True(decided > minimumDecided, $"the compiled subset decided only {decided} tests (expected more than {minimumDecided}): did it stop compiling?");
    }

    private static string? FindSuite()
    {
        const string Debian = "/usr/share/perl5/auto/share/dist/Test-JSON-Schema-Acceptance/tests";
        return Directory.Exists(Path.Combine(Debian, "draft2020-12")) ? Debian : null;
    }
}

/// <summary>Skips, saying why, where the suite is not installed.</summary>
internal sealed class SchemaSuiteFactAttribute : FactAttribute
{
    public SchemaSuiteFactAttribute()
    {
        if (JsonSchemaConformanceTests.SuiteMissing)
        {
            Skip = "the JSON-Schema-Test-Suite is not installed: apt-get install libtest-json-schema-acceptance-perl (scripts/install-deps.sh does)";
        }
    }
}
