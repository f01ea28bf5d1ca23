using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Inbound;

namespace ZeroTrustMesh.Sidecar.Tests.Inbound;

/// <summary>The inbound path as stages, end to end in one process: a kind defined here runs as a stage of the real pipeline.</summary>
public class InboundPipelineTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private static readonly PolicyKinds Kinds = PolicyKinds.Builtin.With(BodyGuardKind.Instance);

    private const string Permissive = InboundTestHost.Permissive + """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-open, namespace: shop}
        spec:
          selector: {service: orders}
          rules: [{}]

        """;

    private const string Guard = """
        ---
        apiVersion: security.ztm.dev/v1
        kind: BodyGuard
        metadata: {name: guard, namespace: shop}
        spec: {selector: {service: orders}, forbidden: DROP TABLE, maxBodyBytes: 64, redact: hunter2}

        """;

    private readonly BodyGuardStageKind _guard = new();
    private InboundTestHost _host = null!;
    private HttpClient _http = null!;

    /// <summary>The sidecar's <c>--http1-fast-path</c>: every test here runs with it off, and again with it on.</summary>
    protected virtual bool Http1FastPath => false;

    public async Task InitializeAsync()
    {
        // The one registration line of the test kind, next to the sidecar's own.
        _host = await InboundTestHost.StartAsync(http1FastPath: Http1FastPath, extraKinds: services => services.AddSingleton<IInboundStageKind>(_guard));
        _http = new HttpClient { BaseAddress = _host.BaseAddress, Timeout = Timeout };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _host.DisposeAsync();
    }

    [Fact]
    public async Task A_kind_registered_from_the_tests_project_runs_as_a_stage_with_the_body_and_a_response_transform()
    {
        var snapshot = _host.Apply("v1", Permissive + Guard, Kinds);
        Assert.Equal(["PeerAuthentication", "AuthorizationPolicy", "BodyGuard"], snapshot.Stages.Select(s => s.Kind.Kind.Name));
        Assert.Contains("BodyGuard forbids 'DROP TABLE'", snapshot.Summary, StringComparison.Ordinal);

        // A body the stage accepts reaches the app byte for byte, though the stage read it first.
        using (var ok = await _http.PostAsync("/echo", Json("{\"name\":\"ada\"}")))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Equal("{\"name\":\"ada\"}", await ok.Content.ReadAsStringAsync());
        }
        Assert.Contains(("/echo", true), _guard.Seen);

        using (var forbidden = await _http.PostAsync("/echo", Json("{\"q\":\"DROP TABLE users\"}")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
            Assert.Equal("BodyGuard shop/guard: the body holds 'DROP TABLE'\n", await forbidden.Content.ReadAsStringAsync());
        }

        // Over the cap: refused from the declared length without reading it, and when chunked, once the cap is passed.
        var large = "{\"pad\":\"" + new string('x', 200) + "\"}";
        using (var declared = await _http.PostAsync("/echo", Json(large)))
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, declared.StatusCode);
        }
        using (var chunked = new HttpRequestMessage(HttpMethod.Post, "/echo") { Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(large))) })
        {
            chunked.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            chunked.Headers.TransferEncodingChunked = true;
            using var response = await _http.SendAsync(chunked);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
            Assert.Contains("over 64 bytes", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // The response transform: the app's text goes through it, and its Content-Length (now wrong) is dropped.
        using (var secret = await _http.GetAsync("/secret"))
        {
            Assert.Equal(HttpStatusCode.OK, secret.StatusCode);
            Assert.Equal("the password is ***", await secret.Content.ReadAsStringAsync());
        }

        // A request that needs no body is forwarded without its body being touched.
        using (var plain = await _http.PostAsync("/echo", new StringContent("not json", Encoding.UTF8, "text/plain")))
        {
            Assert.Equal("not json", await plain.Content.ReadAsStringAsync());
        }
        Assert.Contains(("/echo", false), _guard.Seen);
    }

    [Fact]
    public async Task Without_a_resource_of_the_kind_the_stage_is_not_compiled_and_the_next_version_applies_to_the_next_request()
    {
        _host.Apply("v1", Permissive + Guard, Kinds);
        using (var refused = await _http.PostAsync("/echo", Json("DROP TABLE")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }

        var next = _host.Apply("v2", Permissive, Kinds);
        Assert.DoesNotContain(next.Stages, s => s.Kind.Kind.Name == "BodyGuard");
        var seen = _guard.Seen.Count;
        using (var passed = await _http.PostAsync("/echo", Json("DROP TABLE")))
        {
            Assert.Equal(HttpStatusCode.OK, passed.StatusCode);
        }
        Assert.Equal(seen, _guard.Seen.Count);
        Assert.Equal("v2", _host.State.Current.Version);
    }

    [Fact]
    public void A_sidecar_refuses_a_config_with_a_kind_it_does_not_enforce()
    {
        var config = new ConfigSnapshot { Version = "v1" };
        config.Resources.Add(new BodyGuard(new("guard", "shop"), new BodyGuardSpec(null, "x", 1, null)).ToProto(Kinds));
        var builtinOnly = new InboundSnapshotState(_host.State.Kinds.Where(k => k.Kind != BodyGuardKind.Instance));

        var error = Assert.Throws<FormatException>(() => builtinOnly.Compile(config, InboundTestHost.Orders));
        Assert.Contains("does not know the kind 'BodyGuard'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Until_the_first_config_every_request_is_refused()
    {
        // The empty snapshot is STRICT: a plaintext connection is closed before any HTTP.
        Assert.False(_host.State.Current.AcceptsPlaintext);
        await Assert.ThrowsAsync<HttpRequestException>(() => _http.GetAsync("/anything"));
    }

    private static StringContent Json(string text) => new(text, Encoding.UTF8, "application/json");
}

/// <summary>The same with <c>--http1-fast-path</c>: HTTP/1.1 requests reach the app through the sidecar's own framing.</summary>
public sealed class InboundPipelineTestsWithHttp1FastPath : InboundPipelineTests
{
    protected override bool Http1FastPath => true;
}
