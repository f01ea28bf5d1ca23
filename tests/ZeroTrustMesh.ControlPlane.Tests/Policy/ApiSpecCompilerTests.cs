using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.ControlPlane.Tests.Policy;

/// <summary>ApiSpec at apply: the OpenAPI document is compiled into per-operation schemas, or refused with every error and nothing applied.</summary>
public sealed class ApiSpecCompilerTests : IDisposable
{
    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-apispec-").FullName;
    private readonly CollectingLogs _logs = new();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    public static string Bookshop => File.ReadAllText(Path.Combine(RepositoryRoot(), "examples", "api", "bookshop-openapi.yaml"));

    /// <summary>An ApiSpec for the bookshop with <paramref name="openapi"/> inline.</summary>
    public static string ApiSpecYaml(string openapi, string more = "")
    {
        var text = new StringBuilder("apiVersion: security.ztm.dev/v1\nkind: ApiSpec\nmetadata: {name: bookshop-api, namespace: shop}\nspec:\n  selector: {service: bookshop}\n  mode: Enforce\n");
        text.Append(more);
        text.Append("  openapi:\n    inline: |\n");
        foreach (var line in openapi.Split('\n'))
        {
            text.Append("      ").Append(line).Append('\n');
        }
        return text.ToString();
    }

    [Fact]
    public void The_bookshop_document_compiles_into_operations_and_the_wire_form_carries_no_document()
    {
        using var source = Create();

        source.Apply("api.yaml", ApiSpecYaml(Bookshop, "  redaction:\n    - {operations: [getUser], status: \"200\", removeUndeclared: true}\n"), "operator");

        var spec = (ApiSpec)Assert.Single(source.Resources.Values).Document.Resource;
        Assert.True(spec.IsCompiled);
        Assert.Equal(
            ["GET /users listUsers", "GET /users/{userId} getUser", "GET /users/{userId}/orders listOrders", "POST /users/{userId}/orders createOrder",
             "GET /users/{userId}/orders/{orderId} getOrder", "GET /books listBooks", "GET /books/{bookId} getBook", "PUT /books/{bookId} updateBook"],
            spec.Spec.Operations.Select(o => $"{o.Method} {o.Path} {o.Id}"));
        var create = spec.Spec.Operations.Single(o => o.Id == "createOrder");
        var body = JsonNode.Parse(create.Body!.Schema!)!;
        Assert.Equal("https://json-schema.org/draft/2020-12/schema", (string?)body["$schema"]);
        Assert.Equal("#/$defs/NewOrder", (string?)body["$ref"]);
        // The 3.0 adapter ran: nullable became a type list, the boolean exclusiveMaximum a number.
        Assert.Equal("""["string","null"]""", body["$defs"]!["NewOrder"]!["properties"]!["note"]!["type"]!.ToJsonString());
        Assert.Equal(10, (int?)body["$defs"]!["NewOrder"]!["properties"]!["quantity"]!["exclusiveMaximum"]);
        Assert.NotNull(body["$defs"]!["Address"]);
        Assert.Null(body["$defs"]!["User"]); // only what the schema reaches
        Assert.Contains(create.Parameters, p => p is { Name: "X-Request-Id", In: ParameterLocation.Header, Required: true });
        Assert.Contains(create.Parameters, p => p is { Name: "userId", In: ParameterLocation.Path });
        Assert.Null(spec.Spec.Operations.Single(o => o.Id == "updateBook").Body!.Schema); // text/plain only: not checked
        Assert.Equal("200", Assert.Single(spec.Spec.Operations.Single(o => o.Id == "getUser").Responses).Status);

        var wire = JsonNode.Parse(ApiSpecKind.Instance.ToWire(spec))!;
        Assert.Null(wire["spec"]!["openapi"]);
        Assert.Equal(8, wire["spec"]!["operations"]!.AsArray().Count);
        var read = (ApiSpec)ApiSpecKind.Instance.FromWire(ApiSpecKind.Instance.ToWire(spec));
        Assert.Equal(create.Body.Schema, read.Spec.Operations.Single(o => o.Id == "createOrder").Body!.Schema);
    }

    [Fact]
    public void A_deprecated_operation_is_marked_and_the_mark_survives_the_wire_form()
    {
        using var source = Create();
        const string Document = """
            openapi: 3.1.0
            info: {title: orders, version: "1"}
            paths:
              /orders/{id}:
                parameters:
                  - {name: id, in: path, required: true, schema: {type: integer}}
                get:
                  responses: {"200": {description: ok}}
                delete:
                  deprecated: true
                  responses: {"200": {description: ok}}
            """;

        source.Apply("api.yaml", ApiSpecYaml(Document), "operator");

        var spec = (ApiSpec)Assert.Single(source.Resources.Values).Document.Resource;
        Assert.Equal(["GET False", "DELETE True"], spec.Spec.Operations.Select(o => $"{o.Method} {o.Deprecated}"));
        var read = (ApiSpec)ApiSpecKind.Instance.FromWire(ApiSpecKind.Instance.ToWire(spec));
        Assert.Equal(["GET False", "DELETE True"], read.Spec.Operations.Select(o => $"{o.Method} {o.Deprecated}"));
    }

    [Fact]
    public void An_invalid_document_is_refused_with_every_error_and_its_location_and_nothing_is_applied()
    {
        using var source = Create();
        const string Invalid = """
            openapi: 3.0.3
            info: {version: "1"}
            paths:
              /users/{id}:
                get:
                  responses:
                    "200": {description: ok}
              users:
                get:
                  responses:
                    "200": {description: ok}
            """;

        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("api.yaml", ApiSpecYaml(Invalid), "operator"));

        var text = string.Join("\n", refused.Errors);
        Assert.True(refused.Errors.Any(e => e.Location.StartsWith("api.yaml#1 spec.openapi #/info", StringComparison.Ordinal) && e.Message.Contains("title", StringComparison.OrdinalIgnoreCase)), text);
        Assert.Contains("api.yaml#1 spec.openapi: users is not a valid property at #/paths", text, StringComparison.Ordinal);
        Assert.Equal(refused.Errors.Count, refused.Errors.Distinct().Count());
        Assert.True(refused.Errors.Count >= 2, string.Join("\n", refused.Errors));
        Assert.Empty(source.Resources);
    }

    [Fact]
    public void An_unresolvable_ref_is_refused_naming_the_reference_and_where_it_is()
    {
        using var source = Create();
        var broken = Bookshop.Replace("""schema: {$ref: "#/components/schemas/NewOrder"}""", """schema: {$ref: "#/components/schemas/NoSuchOrder"}""", StringComparison.Ordinal);

        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("api.yaml", ApiSpecYaml(broken), "operator"));

        Assert.Contains(refused.Errors, e => e.ToString().Contains("#/components/schemas/NoSuchOrder", StringComparison.Ordinal)
            && e.Location.Contains("/paths/~1users~1{userId}~1orders/post/requestBody", StringComparison.Ordinal));
        Assert.Empty(source.Resources);
    }

    [Fact]
    public void A_schema_the_library_cannot_compile_is_refused_with_its_location_and_every_other_error()
    {
        using var source = Create();
        var broken = Bookshop
            .Replace("""pattern: "^[a-z0-9-]{1,40}$"}}""", """pattern: "^[a-z(+"}}""", StringComparison.Ordinal)
            .Replace("minLength: 8", "minLength: -3", StringComparison.Ordinal);

        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("api.yaml", ApiSpecYaml(broken,
            "  objectAuthorization:\n    - {name: own, operations: [noSuchOperation, getBook], parameter: userId, equals: \"request.auth.claims[sub]\"}\n"), "operator"));

        var text = string.Join("\n", refused.Errors);
        Assert.True(text.Contains("spec.openapi #/paths/~1users~1{userId}/parameters/0/schema: the schema cannot be compiled", StringComparison.Ordinal), text);
        Assert.Contains("minLength", text, StringComparison.Ordinal);
        Assert.Contains("spec.objectAuthorization[0].operations[0]: 'noSuchOperation' selects no operation of the document", text, StringComparison.Ordinal);
        Assert.Contains("spec.objectAuthorization[0].parameter: 'userId' is not a path parameter of GET /books/{bookId} (getBook)", text, StringComparison.Ordinal);
        Assert.Empty(source.Resources);
    }

    [Theory]
    [InlineData("not: [an, openapi, document]", "spec.openapi")]
    [InlineData("swagger: \"2.0\"\ninfo: {title: t, version: \"1\"}\npaths: {}", "spec.openapi")]
    public void Something_that_is_not_an_OpenAPI_3_document_is_refused(string document, string location)
    {
        using var source = Create();

        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("api.yaml", ApiSpecYaml(document), "operator"));

        Assert.True(refused.Errors.Any(e => e.Location.StartsWith($"api.yaml#1 {location}", StringComparison.Ordinal)), string.Join("\n", refused.Errors));
        Assert.Empty(source.Resources);
    }

    [Fact]
    public void The_document_may_be_a_file_under_the_policy_directory_but_not_outside_it()
    {
        using var source = Create();
        var openapi = Directory.CreateDirectory(Path.Combine(_dataDir, "policies", "openapi")).FullName;
        File.WriteAllText(Path.Combine(openapi, "bookshop.yaml"), Bookshop);
        const string Head = "apiVersion: security.ztm.dev/v1\nkind: ApiSpec\nmetadata: {name: bookshop-api, namespace: shop}\nspec:\n  selector: {service: bookshop}\n";

        source.Apply("api.yaml", Head + "  openapi: {file: openapi/bookshop.yaml}\n", "operator");
        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("api.yaml", Head + "  openapi: {file: ../../etc/passwd}\n", "operator"));

        Assert.Equal(8, ((ApiSpec)Assert.Single(source.Resources.Values).Document.Resource).Spec.Operations.Length);
        Assert.Contains("spec.openapi.file: '../../etc/passwd' cannot be read: it is outside the policy directory", Assert.Single(refused.Errors).ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_edit_of_the_document_file_is_compiled_and_published_again()
    {
        using var factory = LoggerFactory.Create(l => l.AddProvider(_logs));
        var openapi = Directory.CreateDirectory(Path.Combine(_dataDir, "policies", "openapi")).FullName;
        var file = Path.Combine(openapi, "bookshop.yaml");
        File.WriteAllText(file, Bookshop);
        using var source = new DirectoryPolicySource(ControlPlaneParts.Options(_dataDir), TimeProvider.System, factory.CreateLogger<DirectoryPolicySource>());
        const string Yaml = "apiVersion: security.ztm.dev/v1\nkind: ApiSpec\nmetadata: {name: bookshop-api, namespace: shop}\nspec:\n  selector: {service: bookshop}\n  openapi: {file: openapi/bookshop.yaml}\n";
        source.Apply("api.yaml", Yaml, "operator");

        // The same ApiSpec over an edited document is a change, not "unchanged".
        Replace(file, Bookshop.Replace("operationId: getBook", "operationId: readBook", StringComparison.Ordinal));
        Assert.Equal(["ApiSpec/shop/bookshop-api configured"], source.Apply("api.yaml", Yaml, "operator").Outcomes);
        Assert.Equal(["ApiSpec/shop/bookshop-api unchanged"], source.Apply("api.yaml", Yaml, "operator").Outcomes);

        // The watch covers the document's directory: an edit alone is compiled and published.
        var changed = new TaskCompletionSource<PolicyChange>(TaskCreationOptions.RunContinuationsAsynchronously);
        source.Changed += change => changed.TrySetResult(change);
        await source.StartAsync(CancellationToken.None);
        Replace(file, Bookshop.Replace("operationId: getBook", "operationId: fetchBook", StringComparison.Ordinal));

        var published = await changed.Task.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(["ApiSpec/shop/bookshop-api"], published.Keys);
        Assert.Contains(((ApiSpec)Assert.Single(source.Resources.Values).Document.Resource).Spec.Operations, o => o.Id == "fetchBook");

        static void Replace(string path, string text)
        {
            File.WriteAllText(path + ".tmp", text);
            File.Move(path + ".tmp", path, overwrite: true); // one rename: the watch never reads half a file
        }
    }

    [Fact]
    public void A_ConfigMap_reference_is_refused_outside_Kubernetes_with_the_reason()
    {
        using var source = Create();

        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("api.yaml",
            "apiVersion: security.ztm.dev/v1\nkind: ApiSpec\nmetadata: {name: bookshop-api, namespace: shop}\nspec:\n  openapi: {configMapRef: {name: bookshop-openapi, key: openapi.yaml}}\n", "operator"));

        Assert.Contains("spec.openapi.configMapRef: ConfigMaps are read only by a control plane in Kubernetes", Assert.Single(refused.Errors).ToString(), StringComparison.Ordinal);
        Assert.Empty(source.Resources);
    }

    [Theory]
    [InlineData("{configMapRef: {name: Bad_Name, key: openapi.yaml}}", "spec.openapi.configMapRef.name: 'Bad_Name' is not a ConfigMap name")]
    [InlineData("{configMapRef: {name: ok, key: 'a/b'}}", "spec.openapi.configMapRef.key: 'a/b' is not a ConfigMap key")]
    [InlineData("{inline: 'x', configMapRef: {name: ok, key: k}}", "spec.openapi: give exactly one of 'inline'")]
    public void A_ConfigMap_reference_must_name_a_ConfigMap_and_a_key(string openapi, string error)
    {
        using var source = Create();

        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("api.yaml",
            $"apiVersion: security.ztm.dev/v1\nkind: ApiSpec\nmetadata: {{name: bookshop-api, namespace: shop}}\nspec:\n  openapi: {openapi}\n", "operator"));

        Assert.Contains(refused.Errors, e => e.ToString().Contains(error, StringComparison.Ordinal));
    }

    [Fact]
    public void Options_are_checked_before_the_document()
    {
        using var source = Create();

        var refused = Assert.Throws<PolicyValidationException>(() => source.Apply("api.yaml", ApiSpecYaml(Bookshop,
            "  unknownOperations: Block\n  maxBodyBytes: 0\n  redaction:\n    - {operations: [getUser], status: \"2xx\", remove: [password]}\n  objectAuthorization:\n    - {name: a, operations: [getUser], parameter: userId, equals: request.auth.nope}\n"), "operator"));

        var text = string.Join("\n", refused.Errors);
        Assert.Contains("spec.unknownOperations: 'Block' is not a setting: use Allow, Report or Deny", text, StringComparison.Ordinal);
        Assert.Contains("spec.maxBodyBytes: 0 must be 1 to", text, StringComparison.Ordinal);
        Assert.Contains("spec.redaction[0].status: '2xx' is not a response status", text, StringComparison.Ordinal);
        Assert.Contains("spec.redaction[0].remove[0]: 'password' is not a JSON pointer", text, StringComparison.Ordinal);
        Assert.Contains("spec.objectAuthorization[0].equals: 'request.auth.nope' is not a caller attribute", text, StringComparison.Ordinal);
    }

    internal static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "ZeroTrustMesh.sln")))
        {
            directory = directory.Parent;
        }
        return directory?.FullName ?? throw new InvalidOperationException("the repository root is not above the test's directory");
    }

    private DirectoryPolicySource Create()
    {
        using var factory = LoggerFactory.Create(l => l.AddProvider(_logs));
        return new DirectoryPolicySource(ControlPlaneParts.Options(_dataDir), new FakeTimeProvider(), factory.CreateLogger<DirectoryPolicySource>());
    }
}
