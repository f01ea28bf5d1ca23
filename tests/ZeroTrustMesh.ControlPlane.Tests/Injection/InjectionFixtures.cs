using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Reflection;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using ZeroTrustMesh.ControlPlane.Injection;
using ZeroTrustMesh.ControlPlane.Telemetry;

namespace ZeroTrustMesh.ControlPlane.Tests.Injection;

/// <summary>What the injection tests share: the fixtures' folder, the config they inject from, a strict pod reader, a webhook call.</summary>
internal static class InjectionFixtures
{
    /// <summary>The control plane's namespace in every fixture.</summary>
    public const string OwnNamespace = "ztm-system";

    /// <summary>The contract's example config, which the chart renders by default.</summary>
    public const string ConfigJson = """
        {
          "image": "ztm-sidecar:0.1.0",
          "imagePullPolicy": "IfNotPresent",
          "controlPlaneAddress": "https://ztm-controlplane.ztm-system.svc:15012",
          "trustDomain": "cluster.local",
          "tokenAudience": "ztm-controlplane",
          "proxyUid": 1337,
          "resources": { "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "memory": "256Mi" } },
          "excludeInboundPorts": [],
          "excludeOutboundPorts": [],
          "excludeOutboundIPRanges": [],
          "decisionLog": { "enabled": false, "sizeLimit": "", "claimName": "" }
        }
        """;

    public static string TestData { get; } = Path.Combine(
        typeof(InjectionFixtures).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepoRoot").Value!,
        "tests", "ZeroTrustMesh.ControlPlane.Tests", "Injection", "testdata");

    /// <summary>KubernetesClient's serializer options, but an unknown field fails (the chart tests hold rendered objects to the same).</summary>
    public static JsonSerializerOptions Strict { get; } = CreateStrict();

    /// <param name="overrides">Fields that replace the example's (a fixture's <c>config</c>).</param>
    public static InjectionConfig Config(JsonObject? overrides = null)
    {
        var json = JsonNode.Parse(ConfigJson)!.AsObject();
        foreach (var (key, value) in overrides ?? [])
        {
            json[key] = value?.DeepClone();
        }
        return InjectionConfig.Parse(json.ToJsonString(), out var errors) ?? throw new InvalidOperationException(string.Join("; ", errors));
    }

    public static AdmissionWebhook Webhook(ControlPlaneMetrics? metrics = null, JsonObject? config = null) =>
        new(new SidecarInjector(Config(config), OwnNamespace), metrics ?? new ControlPlaneMetrics(), NullLogger<AdmissionWebhook>.Instance);

    /// <summary>Deserializes a pod strictly: any field V1Pod does not know fails.</summary>
    public static V1Pod StrictPod(JsonNode pod) => pod.Deserialize<V1Pod>(Strict) ?? throw new JsonException("null pod");

    /// <summary>Runs one review through the webhook in process: the HTTP status and the body.</summary>
    public static async Task<(int Status, string Body)> CallAsync(AdmissionWebhook webhook, string body, string contentType = "application/json")
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "POST";
        context.Request.ContentType = contentType;
        var bytes = Encoding.UTF8.GetBytes(body);
        context.Request.Body = new MemoryStream(bytes);
        context.Request.ContentLength = bytes.Length;
        var response = new MemoryStream();
        context.Response.Body = response;
        await webhook.HandleAsync(context);
        return (context.Response.StatusCode, Encoding.UTF8.GetString(response.ToArray()));
    }

    /// <summary>
    /// A client that calls the webhook as the API server does: by the Service's DNS name (connected to 127.0.0.1:<paramref name="port"/>),
    /// trusting only <paramref name="root"/> (the caBundle), with the name checked. <paramref name="served"/> sees the server's certificate.
    /// </summary>
    public static HttpClient ApiServerClient(string serviceName, Func<int> port, X509Certificate2 root, Action<X509Certificate2?>? served = null) =>
        new(new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellation) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(IPAddress.Loopback, port(), cancellation);
                return new NetworkStream(socket, ownsSocket: true);
            },
            SslOptions = new SslClientAuthenticationOptions
            {
                CertificateChainPolicy = new X509ChainPolicy
                {
                    TrustMode = X509ChainTrustMode.CustomRootTrust,
                    RevocationMode = X509RevocationMode.NoCheck,
                    CustomTrustStore = { root },
                },
                RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                {
                    served?.Invoke(certificate is null ? null : X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
                    return errors == SslPolicyErrors.None; // chain to the root and the DNS name, nothing waived
                },
            },
        })
        {
            BaseAddress = new Uri($"https://{serviceName}:{port()}"),
            // HTTP/2, as the API server calls webhooks: a refusal sent before the whole body arrived ends just that stream.
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };

    private static JsonSerializerOptions CreateStrict()
    {
        JsonSerializerOptions? kubernetes = null;
        KubernetesJson.AddJsonOptions(o => kubernetes = o);
        return new JsonSerializerOptions(kubernetes!) { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };
    }
}
