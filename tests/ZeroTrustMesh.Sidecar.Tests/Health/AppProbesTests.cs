using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.Sidecar.Health;

namespace ZeroTrustMesh.Sidecar.Tests.Health;

/// <summary>
/// The app's kubelet probes as the injector hands them to the sidecar (<c>ZTM_APP_PROBES</c>): read strictly, then run
/// against a real Kestrel app on loopback over HTTP, HTTPS (a self-signed certificate, as kubelet accepts) and TCP.
/// gRPC health probes run against the demo app's real grpc.health.v1 service in the end-to-end tests.
/// </summary>
public sealed class AppProbesTests : IAsyncLifetime
{
    private WebApplication? _app;
    private int _http;
    private int _https;
    private readonly AppProber _prober = new();

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=app", key, HashAlgorithmName.SHA256);
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http1);
            k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null)));
        });
        _app = builder.Build();
        _app.MapGet("/healthz", () => "ok");
        _app.MapGet("/sick", () => Results.StatusCode(500));
        _app.MapGet("/moved", () => Results.Redirect("/elsewhere"));
        _app.MapGet("/hang", async (CancellationToken ct) => { await Task.Delay(Timeout.Infinite, ct); });
        // 200 only when the probe's query string and header arrive as the pod spec wrote them.
        _app.MapGet("/checked", (HttpRequest r) =>
            r.Query["deep"] == "1" && r.Headers["X-Probe"] == "kubelet" && r.Host.Value == "app.local" ? Results.Ok() : Results.BadRequest($"{r.QueryString} {r.Headers["X-Probe"]} {r.Host}"));
        await _app.StartAsync();
        var addresses = _app.Urls.Select(u => new Uri(u)).ToList();
        _http = addresses.Single(u => u.Scheme == "http").Port;
        _https = addresses.Single(u => u.Scheme == "https").Port;
    }

    public async Task DisposeAsync()
    {
        _prober.Dispose();
        if (_app is not null)
        {
            await _app.DisposeAsync();
        }
    }

    [Fact]
    public void Probes_are_read_by_their_rewritten_path_with_ports_timeouts_and_headers()
    {
        Assert.True(AppProbes.TryParse("""
            {
              "/app-health/web/livez": {"httpGet": {"path": "/healthz?deep=1", "port": 8080, "scheme": "HTTPS", "httpHeaders": [{"name": "X-Probe", "value": "kubelet"}]}, "timeoutSeconds": 3},
              "/app-health/web/readyz": {"tcpSocket": {"port": 8080}},
              "/app-health/db/startupz": {"grpc": {"port": 9090, "service": "db"}, "timeoutSeconds": 2}
            }
            """, out var probes, out var errors), string.Join("; ", errors));
        var http = Assert.IsType<AppProbe.Http>(probes.ByPath["/app-health/web/livez"]);
        Assert.Equal(("/healthz?deep=1", 8080, true, TimeSpan.FromSeconds(3)), (http.PathAndQuery, http.Port, http.Https, http.Timeout));
        Assert.Equal(new KeyValuePair<string, string>("X-Probe", "kubelet"), Assert.Single(http.Headers));
        Assert.Equal(new AppProbe.Tcp(TimeSpan.FromSeconds(1), 8080), probes.ByPath["/app-health/web/readyz"]); // kubelet's default timeout
        Assert.Equal(new AppProbe.Grpc(TimeSpan.FromSeconds(2), 9090, "db"), probes.ByPath["/app-health/db/startupz"]);
    }

    [Theory]
    [InlineData("not json", "not JSON")]
    [InlineData("[]", "must be a JSON object")]
    [InlineData("""{"/healthz": {"tcpSocket": {"port": 1}}}""", "'/healthz': a probe path must start with /app-health/")]
    [InlineData("""{"/app-health/a/livez": {"tcpSocket": {"port": "http"}}}""", "/app-health/a/livez.tcpSocket.port: must be a port number 1-65535 (the injector resolves named ports)")]
    [InlineData("""{"/app-health/a/livez": {"tcpSocket": {"port": 70000}}}""", "/app-health/a/livez.tcpSocket.port: must be a port number")]
    [InlineData("""{"/app-health/a/livez": {"tcpSocket": {"port": 1}, "grpc": {"port": 2}}}""", "must have exactly one of httpGet, tcpSocket, grpc (has tcpSocket, grpc)")]
    [InlineData("""{"/app-health/a/livez": {"exec": {"command": ["true"]}}}""", "must have exactly one of httpGet, tcpSocket, grpc (has none)")]
    [InlineData("""{"/app-health/a/livez": {"httpGet": {"port": 1, "scheme": "FTP"}}}""", "scheme: must be HTTP or HTTPS, not 'FTP'")]
    [InlineData("""{"/app-health/a/livez": {"httpGet": {"port": 1}, "timeoutSeconds": 0}}""", "timeoutSeconds: must be a whole number of seconds, at least 1")]
    [InlineData("""{"/app-health/a/livez": {"httpGet": {"port": 1, "httpHeaders": [{"name": "X"}]}}}""", "each header needs a name and a string value")]
    public void Bad_probes_are_refused_naming_the_path_and_field(string json, string expected)
    {
        Assert.False(AppProbes.TryParse(json, out var probes, out var errors));
        Assert.Same(AppProbes.None, probes);
        Assert.Contains(errors, e => e.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Every_bad_probe_is_reported_at_once()
    {
        Assert.False(AppProbes.TryParse("""{"/app-health/a/livez": {"tcpSocket": {}}, "/app-health/b/livez": {"grpc": {}}}""", out _, out var errors));
        Assert.Equal(2, errors.Count);
    }

    [Fact]
    public async Task An_http_probe_answers_with_the_apps_own_status()
    {
        Assert.Equal(200, (await RunAsync(new AppProbe.Http(TimeSpan.FromSeconds(5), "/healthz", _http, false, []))).Status);
        var sick = await RunAsync(new AppProbe.Http(TimeSpan.FromSeconds(5), "/sick", _http, false, []));
        Assert.Equal((500, "the app answered 500 on /sick"), (sick.Status, sick.Reason));
        // Not followed: kubelet counts a 3xx as success, and so does the status passed back.
        Assert.Equal(302, (await RunAsync(new AppProbe.Http(TimeSpan.FromSeconds(5), "/moved", _http, false, []))).Status);
    }

    [Fact]
    public async Task An_http_probe_keeps_its_query_string_headers_and_host()
    {
        var outcome = await RunAsync(new AppProbe.Http(TimeSpan.FromSeconds(5), "/checked?deep=1", _http, false,
            [new("X-Probe", "kubelet"), new("Host", "app.local")]));
        Assert.True(outcome.Status == 200, outcome.Reason);
    }

    [Fact]
    public async Task An_https_probe_does_not_verify_the_apps_certificate_as_kubelet_does_not()
    {
        var outcome = await RunAsync(new AppProbe.Http(TimeSpan.FromSeconds(5), "/healthz", _https, true, []));
        Assert.True(outcome.Status == 200, outcome.Reason);
    }

    [Fact]
    public async Task A_probe_that_cannot_run_is_a_503_saying_why()
    {
        var closed = FreePort();
        var refused = await RunAsync(new AppProbe.Http(TimeSpan.FromSeconds(5), "/healthz", closed, false, []));
        Assert.Equal(503, refused.Status);
        Assert.StartsWith("the app's probe failed: ", refused.Reason, StringComparison.Ordinal);

        var hung = await RunAsync(new AppProbe.Http(TimeSpan.FromSeconds(1), "/hang", _http, false, []));
        Assert.Equal((503, "the app did not answer within 1s"), (hung.Status, hung.Reason));
    }

    [Fact]
    public async Task A_tcp_probe_succeeds_only_when_the_port_accepts()
    {
        Assert.Equal(200, (await RunAsync(new AppProbe.Tcp(TimeSpan.FromSeconds(5), _http))).Status);
        Assert.Equal(503, (await RunAsync(new AppProbe.Tcp(TimeSpan.FromSeconds(5), FreePort()))).Status);
    }

    private Task<ProbeOutcome> RunAsync(AppProbe probe) => _prober.RunAsync(probe, CancellationToken.None);

    /// <summary>A loopback port nothing listens on: bound, read, released.</summary>
    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
