using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Prometheus;
using ZeroTrustMesh.ControlPlane.Injection;
using ZeroTrustMesh.ControlPlane.Telemetry;

namespace ZeroTrustMesh.ControlPlane.Tests.Injection;

/// <summary>
/// The real HTTPS endpoint on 127.0.0.1:0, called as the API server calls it: by the Service's DNS name, trusting only the
/// mesh roots (the webhook configuration's caBundle). Bad reviews get their HTTP status and the server keeps serving.
/// </summary>
public sealed class WebhookEndpointTests : IAsyncLifetime
{
    private static readonly string[] DnsNames = ["ztm-controlplane.ztm-system.svc", "ztm-controlplane.ztm-system.svc.cluster.local"];

    private readonly ControlPlaneMetrics _metrics = new();
    private readonly ControlPlane.Ca.CertificateAuthority _ca = MeshCa.Create();
    private WebhookServer _server = null!;
    private HttpClient _client = null!;
    private X509Certificate2? _served;

    public async Task InitializeAsync()
    {
        _server = await WebhookServer.StartAsync(
            IPAddress.Loopback, 0, InjectionFixtures.Webhook(_metrics), new WebhookCertificate(_ca, DnsNames), _ => { }, CancellationToken.None);
        _client = InjectionFixtures.ApiServerClient(DnsNames[0], () => _server.Port, _ca.Bundle.Roots[0], certificate => _served = certificate);
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task A_review_over_https_is_answered_with_a_patch_by_a_certificate_of_the_mesh_ca_for_the_service_names()
    {
        var review = Fixture("deployment");

        using var response = await _client.PostAsync("/inject", new StringContent(review, Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answer = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal("AdmissionReview", answer["kind"]!.GetValue<string>());
        Assert.True(answer["response"]!["allowed"]!.GetValue<bool>());
        Assert.Equal("JSONPatch", answer["response"]!["patchType"]!.GetValue<string>());

        Assert.NotNull(_served);
        var names = _served!.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal(DnsNames, names.EnumerateDnsNames().ToArray());
        Assert.Empty(names.EnumerateIPAddresses());
        Assert.DoesNotContain("URI", names.Format(false), StringComparison.Ordinal); // not an SVID: no SPIFFE ID
        var usage = Assert.Single(_served.Extensions.OfType<X509EnhancedKeyUsageExtension>());
        Assert.Equal("1.3.6.1.5.5.7.3.1", Assert.Single(usage.EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>()).Value);
        Assert.False(_served.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
        using var http11 = new HttpRequestMessage(HttpMethod.Post, "/inject")
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new StringContent(review, Encoding.UTF8, "application/json"),
        };
        using var overHttp11 = await _client.SendAsync(http11);
        Assert.Equal(HttpStatusCode.OK, overHttp11.StatusCode);
        Assert.Equal(2, await Count("injected"));
    }

    [Fact]
    public async Task A_body_that_is_not_json_content_gets_415()
    {
        using var response = await _client.PostAsync("/inject", new StringContent(Fixture("deployment"), Encoding.UTF8, "application/yaml"));

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        Assert.Contains("application/yaml", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",", "not JSON")]
    [InlineData("[1,2,3]", "not an admission.k8s.io/v1 AdmissionReview")]
    [InlineData("{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\",\"request\":{}}", "not an admission.k8s.io/v1 AdmissionReview")]
    [InlineData("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}", "has no request")]
    [InlineData("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},\"operation\":\"CREATE\"}}", "has no uid")]
    [InlineData("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"1\",\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},\"namespace\":\"shop\",\"operation\":\"CREATE\"}}", "has no object")]
    [InlineData("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"1\",\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},\"namespace\":\"shop\",\"operation\":\"CREATE\",\"object\":{\"spec\":{\"containers\":\"web\"}}}}", "not a pod")]
    public async Task A_bad_review_gets_400_saying_what_is_wrong(string body, string says)
    {
        using var response = await _client.PostAsync("/inject", new StringContent(body, Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(says, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(1, await Count("error"));
        await StillServes();
    }

    [Fact]
    public async Task An_oversized_review_gets_413_with_or_without_a_content_length()
    {
        var huge = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"pad\":\"" + new string('x', AdmissionWebhook.MaxBodyBytes) + "\"}";

        using var declared = await _client.PostAsync("/inject", new StringContent(huge, Encoding.UTF8, "application/json"));
        using var chunked = await _client.PostAsync("/inject", new ChunkedContent(Encoding.UTF8.GetBytes(huge)));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, declared.StatusCode);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, chunked.StatusCode);
        Assert.Equal(2, await Count("error"));
        await StillServes();
    }

    [Fact]
    public async Task Only_post_to_inject_is_served()
    {
        using var get = await _client.GetAsync("/inject");
        using var other = await _client.PostAsync("/mutate", new StringContent(Fixture("deployment"), Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.MethodNotAllowed, get.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
    }

    [Fact]
    public async Task Other_kinds_and_operations_are_let_through_untouched()
    {
        var review = JsonNode.Parse(Fixture("deployment"))!;
        review["request"]!["operation"] = "UPDATE";

        using var response = await _client.PostAsync("/inject", new StringContent(review.ToJsonString(), Encoding.UTF8, "application/json"));

        var answer = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["response"]!;
        Assert.True(answer["allowed"]!.GetValue<bool>());
        Assert.Null(answer["patch"]);
        Assert.Equal(1, await Count("skipped"));
    }

    [Fact]
    public async Task A_refused_pod_is_answered_not_allowed_with_the_message_and_counted()
    {
        using var response = await _client.PostAsync("/inject", new StringContent(Fixture("invalid-exclusions"), Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answer = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["response"]!;
        Assert.False(answer["allowed"]!.GetValue<bool>());
        Assert.Equal(400, answer["status"]!["code"]!.GetValue<int>());
        Assert.Contains("traffic.ztm.dev/excludeInboundPorts: '8081,http' is invalid", answer["status"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(1, await Count("refused"));
    }

    private async Task StillServes()
    {
        using var response = await _client.PostAsync("/inject", new StringContent(Fixture("bare-pod"), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    private async Task<double> Count(string outcome)
    {
        using var stream = new MemoryStream();
        await _metrics.Registry.CollectAndExportAsTextAsync(stream);
        var line = Encoding.UTF8.GetString(stream.ToArray()).Split('\n')
            .FirstOrDefault(l => l.StartsWith($"ztm_injection_requests_total{{outcome=\"{outcome}\"}}", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static string Fixture(string name) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(InjectionFixtures.TestData, name + ".json")))!["review"]!.ToJsonString();

    /// <summary>A body sent without Content-Length (chunked), as a streaming client would.</summary>
    private sealed class ChunkedContent(byte[] bytes) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            for (var offset = 0; offset < bytes.Length; offset += 64 * 1024)
            {
                await stream.WriteAsync(bytes.AsMemory(offset, Math.Min(64 * 1024, bytes.Length - offset)));
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            length = 0;
            return false;
        }
    }
}
