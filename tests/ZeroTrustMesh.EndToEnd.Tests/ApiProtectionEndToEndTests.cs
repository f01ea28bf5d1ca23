using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// ApiSpec through real processes: the control plane compiles the bookshop's OpenAPI document, the bookshop's sidecar
/// validates requests, enforces object-level authorization and redacts responses; callers come through the frontend's
/// sidecar with JWTs of a test issuer (sub: the user, role: customer or admin).
/// </summary>
public sealed class ApiProtectionEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Issuer = "https://auth.bookshop.example";

    private readonly TestMesh _mesh = new(output);
    private readonly TestJwtIssuer _issuer = new(Issuer);
    private BookshopApp _app = null!;
    private ControlPlane _controlPlane = null!;
    private Sidecar _sidecar = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _app = await BookshopApp.StartAsync();
        _controlPlane = await _mesh.StartControlPlaneAsync();
        var allowed = await _controlPlane.ApplyPolicyAsync(ControlPlane.AllowNamespaceYaml("bookshop") + "\n" + $$"""
            ---
            apiVersion: security.ztm.dev/v1
            kind: RequestAuthentication
            metadata: {name: bookshop-jwt, namespace: shop}
            spec:
              selector: {service: bookshop}
              jwtRules:
                - issuer: {{Issuer}}
                  jwks: '{{_issuer.Jwks}}'
            """);
        _sidecar = await _mesh.StartSidecarAsync(_controlPlane, await _controlPlane.MintTokenAsync("shop", "bookshop"), "sidecar-bookshop",
            "--app-port", _app.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var frontend = await _mesh.StartSidecarAsync(_controlPlane, await _controlPlane.MintTokenAsync("shop", "frontend"), "sidecar-frontend");
        foreach (var sidecar in new[] { _sidecar, frontend })
        {
            await sidecar.WaitForIdentityAsync();
            await sidecar.Process.WaitForLineAsync("registered with the control plane ");
        }
        await _sidecar.WaitForPolicyAsync(allowed);
        _http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
    }

    public async Task DisposeAsync()
    {
        _http?.Dispose();
        await _mesh.DisposeAsync();
        await _app.DisposeAsync();
        _issuer.Dispose();
    }

    private static string Bookshop => File.ReadAllText(Path.Combine(Executables.RepoRoot, "examples", "api", "bookshop-openapi.yaml"));

    /// <summary>The bookshop's ApiSpec with <paramref name="options"/> (YAML lines under spec) and the document inline.</summary>
    private async Task ApplyApiSpecAsync(string options)
    {
        var yaml = new StringBuilder("apiVersion: security.ztm.dev/v1\nkind: ApiSpec\nmetadata: {name: bookshop-api, namespace: shop}\nspec:\n  selector: {service: bookshop}\n");
        yaml.Append(options);
        yaml.Append("  openapi:\n    inline: |\n");
        foreach (var line in Bookshop.Split('\n'))
        {
            yaml.Append("      ").Append(line).Append('\n');
        }
        await _sidecar.WaitForPolicyAsync(await _controlPlane.ApplyPolicyAsync(yaml.ToString()));
    }

    private string Token(string user, string role = "customer") =>
        _issuer.Token(user, "bookshop", null, TimeSpan.FromMinutes(5), more: new Dictionary<string, string> { ["role"] = role });

    private async Task<(HttpStatusCode Status, string Body)> SendAsync(HttpMethod method, string path, string? json = null, string? token = null, string? contentType = "application/json", bool requestId = true)
    {
        using var request = new HttpRequestMessage(method, $"http://bookshop:{_app.Port}{path}");
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8);
            request.Content.Headers.ContentType = contentType is null ? null : MediaTypeHeaderValue.Parse(contentType);
        }
        if (requestId)
        {
            request.Headers.Add("X-Request-Id", "req-00000001");
        }
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        using var response = await _http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private const string ValidOrder = """{"bookId": 7, "quantity": 2, "note": null, "shipping": {"street": "1 Main St", "city": "Springfield"}}""";

    /// <summary>Four mistakes at once: a string for an integer, a quantity at the exclusive maximum, an undeclared member, a missing required one.</summary>
    private const string InvalidOrder = """{"bookId": "seven", "quantity": 10, "coupon": "FREE", "shipping": {"street": "1 Main St"}}""";

    [Fact]
    public async Task Enforce_refuses_invalid_requests_with_every_error_and_DryRun_lets_the_same_requests_pass_with_the_same_verdict()
    {
        await ApplyApiSpecAsync("  mode: Enforce\n");
        var before = _app.Requests;

        var (status, body) = await SendAsync(HttpMethod.Post, "/users/alice/orders", ValidOrder);
        Assert.True(status == HttpStatusCode.Created, body);

        (status, body) = await SendAsync(HttpMethod.Post, "/users/alice/orders", InvalidOrder, requestId: false);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("ApiSpec 'shop/bookshop-api': the request does not match operation createOrder", body, StringComparison.Ordinal);
        Assert.Contains("header.X-Request-Id: required header is missing", body, StringComparison.Ordinal);
        Assert.Contains("body/bookId:", body, StringComparison.Ordinal);
        Assert.Contains("body/quantity:", body, StringComparison.Ordinal);
        Assert.Contains("body/shipping:", body, StringComparison.Ordinal); // city is required
        Assert.Contains("coupon", body, StringComparison.Ordinal); // additionalProperties: false
        Assert.Equal(before + 1, _app.Requests); // only the valid one reached the app

        // Typed parameters: a path integer, a query integer in range, a query boolean.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/books/7")).Status);
        (status, body) = await SendAsync(HttpMethod.Get, "/books/seven");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("path.bookId:", body, StringComparison.Ordinal);
        (status, body) = await SendAsync(HttpMethod.Get, "/users/alice/orders?limit=500", token: Token("alice"));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("query.limit:", body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/books?inStock=true&author=Herbert")).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync(HttpMethod.Get, "/books?inStock=maybe")).Status);

        // Invalid JSON and 1,000-deep nesting: 400 with the reason, no crash (the next request is served).
        (status, body) = await SendAsync(HttpMethod.Post, "/users/alice/orders", """{"bookId": 7, "quantity": """);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("body: not valid JSON", body, StringComparison.Ordinal);
        (status, body) = await SendAsync(HttpMethod.Post, "/users/alice/orders", new string('[', 1000) + new string(']', 1000));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("depth", body, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/books/7")).Status);

        // Not JSON: not read, the app decides (updateBook declares text/plain).
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/books/7", "a new title", contentType: "text/plain")).Status);

        await ApplyApiSpecAsync("  mode: DryRun\n");
        before = _app.Requests;
        (status, body) = await SendAsync(HttpMethod.Post, "/users/alice/orders", InvalidOrder, requestId: false);
        Assert.True(status == HttpStatusCode.Created, body);
        Assert.Equal(before + 1, _app.Requests);
        await _sidecar.Process.WaitForLineAsync(l => l.Contains("api shop/bookshop-api dry-run, passed result=invalid POST /users/alice/orders", StringComparison.Ordinal)
            && l.Contains("body/bookId:", StringComparison.Ordinal), "the DryRun verdict in the log");

        var metrics = await Mesh.MetricsAsync(_sidecar);
        // Six invalid requests in Enforce, and the same invalid order in DryRun: the same verdict, counted alike.
        Assert.Equal(6 + 1, Mesh.Sample(metrics, "ztm_api_validation_total", ("policy", "shop/bookshop-api"), ("result", "invalid")));
        Assert.True(Mesh.Sample(metrics, "ztm_api_validation_total", ("policy", "shop/bookshop-api"), ("result", "valid")) >= 5);
    }

    [Theory]
    [InlineData("Allow", HttpStatusCode.OK, false)]
    [InlineData("Report", HttpStatusCode.OK, true)]
    [InlineData("Deny", HttpStatusCode.NotFound, true)]
    public async Task Undeclared_operations_follow_unknownOperations(string setting, HttpStatusCode expected, bool logged)
    {
        await ApplyApiSpecAsync($"  mode: Enforce\n  unknownOperations: {setting}\n");

        var (status, body) = await SendAsync(HttpMethod.Get, "/admin/debug");
        var (deleteStatus, _) = await SendAsync(HttpMethod.Delete, "/books/7");

        Assert.True(status == expected, body);
        Assert.Equal(expected, deleteStatus);
        if (expected == HttpStatusCode.NotFound)
        {
            Assert.Contains("ApiSpec 'shop/bookshop-api': GET /admin/debug is not an operation of the API", body, StringComparison.Ordinal);
        }
        if (logged)
        {
            await _sidecar.Process.WaitForLineAsync(l => l.Contains("api shop/bookshop-api", StringComparison.Ordinal) && l.Contains("result=unknown DELETE /books/7", StringComparison.Ordinal), "the unknown operation in the log");
        }
        var metrics = await Mesh.MetricsAsync(_sidecar);
        Assert.Equal(2, Mesh.Sample(metrics, "ztm_api_validation_total", ("policy", "shop/bookshop-api"), ("result", "unknown")));
    }

    [Fact]
    public async Task A_body_over_the_limit_is_refused_with_413_before_the_app_and_the_sidecar_keeps_serving()
    {
        await ApplyApiSpecAsync("  mode: Enforce\n");
        var before = _app.Requests;
        var tenMegabytes = "{\"note\": \"" + new string('x', 10 * 1024 * 1024) + "\"}";

        var (status, body) = await SendAsync(HttpMethod.Post, "/users/alice/orders", tenMegabytes);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Contains("is over the limit of 1048576 bytes (maxBodyBytes)", body, StringComparison.Ordinal);
        Assert.Equal(before, _app.Requests);
        Assert.Equal(HttpStatusCode.Created, (await SendAsync(HttpMethod.Post, "/users/alice/orders", ValidOrder)).Status);
    }

    [Fact]
    public async Task A_user_reading_another_users_objects_is_refused_their_own_pass_and_an_admin_passes()
    {
        await ApplyApiSpecAsync("""
              mode: Enforce
              objectAuthorization:
                - name: own-user-data
                  operations: ["* /users/{userId}", "* /users/{userId}/*"]
                  parameter: userId
                  equals: request.auth.claims[sub]
                  unless:
                    - key: request.auth.claims[role]
                      values: [admin]

            """);

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/users/alice", token: Token("alice"))).Status);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/users/alice/orders/1", token: Token("alice"))).Status);

        var (status, body) = await SendAsync(HttpMethod.Get, "/users/bob/orders/1", token: Token("alice"));
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Contains("denied by ApiSpec 'shop/bookshop-api' object rule 'own-user-data': path parameter userId 'bob' is not the caller's request.auth.claims[sub]", body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Post, "/users/bob/orders", ValidOrder, token: Token("alice"))).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Get, "/users/bob")).Status); // no token, no subject

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/users/bob/orders/1", token: Token("carol", role: "admin"))).Status);
        // Operations the rule does not select are not checked.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/books/7", token: Token("alice"))).Status);

        var metrics = await Mesh.MetricsAsync(_sidecar);
        Assert.Equal(3, Mesh.Sample(metrics, "ztm_api_validation_total", ("policy", "shop/bookshop-api"), ("result", "object_denied")));

        // ztmctl policy test reaches the verdicts the sidecar reached.
        foreach (var (path, token, allowed) in new[] { ("/users/alice/orders/1", Token("alice"), true), ("/users/bob/orders/1", Token("alice"), false), ("/users/bob/orders/1", Token("carol", role: "admin"), true) })
        {
            var (exit, verdict, _) = await _mesh.ZtmctlAsync("policy", "test", "--from", "spiffe://cluster.local/ns/shop/sa/frontend", "--to", "bookshop.shop",
                "--method", "GET", "--path", path, "--jwt", token);
            Assert.True((allowed ? 0 : 4) == exit, verdict);
            if (!allowed)
            {
                Assert.Contains("object rule 'own-user-data': path parameter userId 'bob'", verdict, StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public async Task Passwords_and_undeclared_fields_are_removed_from_responses_nested_and_in_arrays_and_counted()
    {
        await ApplyApiSpecAsync("""
              mode: Enforce
              redaction:
                - operations: [getUser, listUsers]
                  status: "200"
                  remove: [/password, /users/*/password]
                  mask: [/email, /users/*/email]
                  removeUndeclared: true

            """);

        var (status, body) = await SendAsync(HttpMethod.Get, "/users/alice", token: Token("alice"));
        Assert.True(status == HttpStatusCode.OK, body);
        var user = JsonNode.Parse(body)!.AsObject();
        Assert.Equal(["id", "name", "email", "role", "address"], user.Select(p => p.Key));
        Assert.Equal("****", (string?)user["email"]);
        Assert.Equal(["street", "city"], user["address"]!.AsObject().Select(p => p.Key)); // internalRoute: undeclared, nested

        (status, body) = await SendAsync(HttpMethod.Get, "/users");
        Assert.True(status == HttpStatusCode.OK, body);
        var list = JsonNode.Parse(body)!.AsObject();
        Assert.Equal(["users"], list.Select(p => p.Key)); // total: undeclared
        Assert.All(list["users"]!.AsArray(), u =>
        {
            Assert.Equal(["id", "name", "email", "role", "address"], u!.AsObject().Select(p => p.Key));
            Assert.Equal("****", (string?)u["email"]);
        });
        Assert.DoesNotContain("hunter2", body, StringComparison.Ordinal);
        Assert.DoesNotContain("078-05-1120", body, StringComparison.Ordinal);

        // Operations without redaction are untouched.
        Assert.Contains("\"title\"", (await SendAsync(HttpMethod.Get, "/books/7")).Body, StringComparison.Ordinal);

        var metrics = await Mesh.MetricsAsync(_sidecar);
        // alice: password, email, ssn, isAdmin, internalRoute = 5; the list: 2 x 5 + total = 11.
        Assert.Equal(16, Mesh.Sample(metrics, "ztm_api_redactions_total", ("policy", "shop/bookshop-api")));
    }
}
