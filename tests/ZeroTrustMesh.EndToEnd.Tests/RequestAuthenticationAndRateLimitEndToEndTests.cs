using System.Net;
using System.Net.Http.Headers;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// RequestAuthentication and RateLimitPolicy through real processes (control plane, orders app and its sidecar, frontend
/// sidecar): a bearer token is validated against the issuer's keys and its claims drive the policy; an invalid token is a
/// 401 and never reaches the app; a caller over its budget gets a 429 with Retry-After, counted by policy.
/// </summary>
public sealed class RequestAuthenticationAndRateLimitEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Issuer = "https://auth.shop.example";

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    /// <summary>POST needs a token of the issuer with scope write:orders; a token without it is denied by name.</summary>
    private static string Policies(string jwtRules) => $$"""
        apiVersion: security.ztm.dev/v1
        kind: RequestAuthentication
        metadata: {name: orders-jwt, namespace: shop}
        spec:
          selector: {service: orders}
          jwtRules:
        {{jwtRules}}
        ---
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-writers, namespace: shop}
        spec:
          selector: {service: orders}
          action: ALLOW
          rules:
            - from:
                - source:
                    principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
                    requestPrincipals: ["{{Issuer}}/*"]
              to:
                - operation: {methods: ["POST", "GET"], paths: ["/orders/*"]}
              when:
                - key: request.auth.claims[scope]
                  values: ["write:orders"]
        ---
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-require-write-scope, namespace: shop}
        spec:
          selector: {service: orders}
          action: DENY
          rules:
            - from:
                - source:
                    requestPrincipals: ["*"]
              to:
                - operation: {methods: ["POST"]}
              when:
                - key: request.auth.claims[scope]
                  notValues: ["write:orders"]
        """;

    [Fact]
    public async Task Jwt_with_an_inline_jwks_valid_with_scope_allowed_without_scope_denied_invalid_401_and_missing_not_allowed()
    {
        using var issuer = new TestJwtIssuer(Issuer);
        using var impostor = new TestJwtIssuer(Issuer); // same issuer and kid, another key
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane, allowNamespace: false);
        var version = await controlPlane.ApplyPolicyAsync(Policies($"""
                - issuer: {Issuer}
                  audiences: ["orders"]
                  jwks: '{issuer.Jwks}'
            """));
        await ordersSidecar.WaitForPolicyAsync(version);
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}/orders/1";

        async Task<(HttpStatusCode Status, string Body, HttpResponseMessage Response)> Post(string? token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent("{}") };
            if (token is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            }
            var response = await http.SendAsync(request);
            return (response.StatusCode, await response.Content.ReadAsStringAsync(), response);
        }

        var (status, body, _) = await Post(issuer.Token("alice", "orders", "read:orders write:orders", TimeSpan.FromMinutes(5)));
        Assert.True(status == HttpStatusCode.OK, body);

        (status, body, _) = await Post(issuer.Token("alice", "orders", "read:orders", TimeSpan.FromMinutes(5)));
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Contains("policy 'shop/orders-require-write-scope' rule 0", body, StringComparison.Ordinal);

        (status, body, var expired) = await Post(issuer.Token("alice", "orders", "write:orders", TimeSpan.FromMinutes(5), DateTimeOffset.UtcNow.AddMinutes(-10)));
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Contains("Jwt is expired", body, StringComparison.Ordinal);
        Assert.Contains("invalid_token", expired.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);

        (status, body, _) = await Post(impostor.Token("alice", "orders", "write:orders", TimeSpan.FromMinutes(5)));
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Contains("Jwt verification fails", body, StringComparison.Ordinal);

        (status, body, _) = await Post(issuer.Token("alice", "payments", "write:orders", TimeSpan.FromMinutes(5)));
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Contains("Audiences in Jwt are not allowed", body, StringComparison.Ordinal);

        // No token: not refused by authentication, but no ALLOW rule matches without one.
        (status, body, _) = await Post(null);
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Contains("no ALLOW policy matched", body, StringComparison.Ordinal);

        await ordersSidecar.Process.WaitForLineAsync(l => l.Contains("\"status\":401", StringComparison.Ordinal) && l.Contains("Jwt is expired", StringComparison.Ordinal), "401 access log line");
        var metrics = await Mesh.MetricsAsync(ordersSidecar);
        Assert.Equal(3, Mesh.Sample(metrics, "ztm_jwt_authentication_total", ("outcome", "invalid")));
        Assert.Equal(2, Mesh.Sample(metrics, "ztm_jwt_authentication_total", ("outcome", "valid")));
    }

    [Fact]
    public async Task A_validated_token_is_removed_before_the_app_unless_its_rule_sets_forward_original_token()
    {
        using var stripped = new TestJwtIssuer(Issuer);
        using var forwarded = new TestJwtIssuer("https://forwarded.example");
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        var version = await controlPlane.ApplyPolicyAsync($$"""
            apiVersion: security.ztm.dev/v1
            kind: RequestAuthentication
            metadata: {name: orders-jwt, namespace: shop}
            spec:
              selector: {service: orders}
              jwtRules:
                - issuer: {{Issuer}}
                  jwks: '{{stripped.Jwks}}'
                - issuer: https://forwarded.example
                  jwks: '{{forwarded.Jwks}}'
                  forwardOriginalToken: true
            """);
        await ordersSidecar.WaitForPolicyAsync(version);
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };

        // The app's view of the Authorization header (header names are case-insensitive).
        async Task<string?> AuthorizationSeenByApp(string token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"http://orders:{orders.HttpPort}/orders/1");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var headers = (await EchoClient.ReadEcho(response)).GetProperty("headers");
            return headers.EnumerateObject().Where(h => h.Name.Equals("authorization", StringComparison.OrdinalIgnoreCase)).Select(h => h.Value.GetString()).SingleOrDefault();
        }

        Assert.Null(await AuthorizationSeenByApp(stripped.Token("alice", "orders", "read:orders", TimeSpan.FromMinutes(5))));

        var token = forwarded.Token("bob", "orders", "read:orders", TimeSpan.FromMinutes(5));
        Assert.Equal($"Bearer {token}", await AuthorizationSeenByApp(token));
    }

    [Fact]
    public async Task Jwt_with_a_jwks_uri_is_fetched_and_an_unreachable_jwks_refuses_its_issuer_with_the_reason()
    {
        using var issuer = new TestJwtIssuer(Issuer);
        using var other = new TestJwtIssuer("https://other.example");
        await using var jwks = new LoopbackJwksServer(issuer.Jwks);
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane, allowNamespace: false);
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        var version = await controlPlane.ApplyPolicyAsync(Policies($"""
                - issuer: {Issuer}
                  jwksUri: {jwks.Uri}
                - issuer: https://other.example
                  jwksUri: http://127.0.0.1:1/jwks
            """));
        await ordersSidecar.WaitForPolicyAsync(version);
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}/orders/1";

        using (var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent("{}") })
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", issuer.Token("alice", "orders", "write:orders", TimeSpan.FromMinutes(5)));
            using var response = await http.SendAsync(request);
            Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        }
        Assert.True(jwks.Requests >= 1);
        await ordersSidecar.Process.WaitForLineAsync($"jwks {jwks.Uri} fetched: 1 signing key(s)");

        using (var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent("{}") })
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", other.Token("bob", "orders", "write:orders", TimeSpan.FromMinutes(5)));
            using var response = await http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Contains("JWKS http://127.0.0.1:1/jwks could not be fetched", body, StringComparison.Ordinal);
        }
        await ordersSidecar.Process.WaitForLineAsync("jwks http://127.0.0.1:1/jwks could not be fetched");
        Assert.False(ordersSidecar.Process.Exited.IsCompleted);
    }

    [Fact]
    public async Task Rate_limit_refuses_the_fourth_request_in_a_minute_with_retry_after_and_counts_it()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        var version = await controlPlane.ApplyPolicyAsync("""
            apiVersion: security.ztm.dev/v1
            kind: RateLimitPolicy
            metadata: {name: orders-limit, namespace: shop}
            spec:
              selector: {service: orders}
              perCaller: {requestsPerUnit: 3, unit: minute, burst: 3}
            """);
        await ordersSidecar.WaitForPolicyAsync(version);
        using var http = new HttpClient(Mesh.HostAddressed(frontend)) { Timeout = Mesh.Timeout };
        var url = $"http://orders:{orders.HttpPort}/orders/1";

        for (var i = 0; i < 3; i++)
        {
            using var allowed = await http.GetAsync(url);
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }
        using var limited = await http.GetAsync(url);
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        var retryAfter = limited.Headers.RetryAfter?.Delta;
        Assert.NotNull(retryAfter);
        Assert.InRange(retryAfter.Value.TotalSeconds, 1, 20); // 3 per minute: the next token is at most 20 s away
        Assert.Contains("rate limited by policy shop/orders-limit", await limited.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        var metrics = await Mesh.MetricsAsync(ordersSidecar);
        Assert.Equal(1, Mesh.Sample(metrics, "ztm_rate_limited_total", ("policy", "shop/orders-limit")));
        Assert.Equal(1, Mesh.Sample(metrics, "ztm_requests_total", ("direction", "inbound"), ("code", "429")));
    }
}
