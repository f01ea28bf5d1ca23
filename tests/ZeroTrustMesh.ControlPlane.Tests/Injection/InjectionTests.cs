using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.ControlPlane.Injection;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Injection;

/// <summary>What the golden fixtures do not show: re-injection, the strict reader, the config file, the flags, rotation.</summary>
public sealed class InjectionTests
{
    [Fact]
    public async Task Reinjecting_an_injected_pod_changes_nothing()
    {
        var webhook = InjectionFixtures.Webhook();
        var review = JsonNode.Parse(File.ReadAllText(Path.Combine(InjectionFixtures.TestData, "several-containers.json")))!["review"]!;
        var (_, first) = await InjectionFixtures.CallAsync(webhook, review.ToJsonString());
        var patch = JsonNode.Parse(Encoding.UTF8.GetString(Convert.FromBase64String(JsonNode.Parse(first)!["response"]!["patch"]!.GetValue<string>())));
        review["request"]!["object"] = JsonPatch.Apply(review["request"]!["object"], patch);

        var (status, second) = await InjectionFixtures.CallAsync(webhook, review.ToJsonString());

        Assert.Equal(200, status);
        var response = JsonNode.Parse(second)!["response"]!;
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(response["patch"]);
    }

    [Fact]
    public async Task Every_truncation_and_type_mangling_of_a_review_is_answered_never_thrown()
    {
        var webhook = InjectionFixtures.Webhook();
        var review = JsonNode.Parse(File.ReadAllText(Path.Combine(InjectionFixtures.TestData, "probe-http.json")))!["review"]!.ToJsonString();

        for (var length = 0; length < review.Length; length += 7)
        {
            var (status, _) = await InjectionFixtures.CallAsync(webhook, review[..length]);
            Assert.Equal(400, status);
        }
        // Every value in turn replaced by a value of another JSON type.
        var paths = new List<string>();
        Collect(JsonNode.Parse(review)!, "", paths);
        foreach (var path in paths)
        {
            foreach (var replacement in new JsonNode?[] { null, JsonValue.Create(7), JsonValue.Create("x"), new JsonArray(), new JsonObject() })
            {
                var mangled = JsonNode.Parse(review)!;
                mangled = JsonPatch.Apply(mangled, new JsonArray(new JsonObject { ["op"] = "replace", ["path"] = path, ["value"] = replacement?.DeepClone() }))!;
                var (status, body) = await InjectionFixtures.CallAsync(webhook, mangled.ToJsonString());
                Assert.True(status is 200 or 400, $"{path} = {replacement?.ToJsonString() ?? "null"}: {status} {body}");
            }
        }
        Assert.True(paths.Count > 50);
    }

    private static void Collect(JsonNode node, string path, List<string> paths)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (key, child) in o)
                {
                    var childPath = path + "/" + SidecarInjector.EscapePointer(key);
                    paths.Add(childPath);
                    if (child is not null)
                    {
                        Collect(child, childPath, paths);
                    }
                }
                break;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++)
                {
                    paths.Add($"{path}/{i}");
                    if (a[i] is { } child)
                    {
                        Collect(child, $"{path}/{i}", paths);
                    }
                }
                break;
        }
    }

    [Fact]
    public void The_strict_reader_refuses_a_field_the_pod_model_does_not_have()
    {
        var pod = JsonNode.Parse("""{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"a","image":"b","restartpolicy":"Always"}]}}""")!;

        var error = Assert.Throws<JsonException>(() => InjectionFixtures.StrictPod(pod));

        Assert.Contains("restartpolicy", error.Message, StringComparison.Ordinal);
        pod["spec"]!["containers"]![0]!.AsObject().Remove("restartpolicy");
        Assert.Equal("x", InjectionFixtures.StrictPod(pod).Metadata.Name);
    }

    [Fact]
    public void The_contract_config_parses_and_a_bad_one_reports_every_error()
    {
        var config = InjectionFixtures.Config();
        Assert.Equal("ztm-sidecar:0.1.0", config.Image);
        Assert.Equal("64Mi", config.Resources.Requests["memory"]);

        var bad = InjectionConfig.Parse("""
            {"image":"","imagePullPolicy":"Sometimes","controlPlaneAddress":"http://cp:15012","trustDomain":"Bad Domain","tokenAudience":"",
             "proxyUid":0,"resources":{"requests":{"cpu":"lots","gpu":"1"}},"excludeInboundPorts":[0],"excludeOutboundPorts":[65536],
             "excludeOutboundIPRanges":["10.0.0.1/8","nope"],"decisionLog":{"enabled":true,"sizeLimit":"big","claimName":"Not_A_Name"}}
            """, out var errors);

        Assert.Null(bad);
        Assert.Equal(
            [
                "image", "imagePullPolicy", "controlPlaneAddress", "trustDomain", "tokenAudience", "proxyUid", "resources.requests.cpu", "resources.requests.gpu",
                "excludeInboundPorts[0]", "excludeOutboundPorts[0]", "excludeOutboundIPRanges[0]", "excludeOutboundIPRanges[1]",
                "decisionLog.sizeLimit", "decisionLog.claimName", "decisionLog",
            ],
            errors.Select(e => e.Split(':')[0]).ToArray());
        Assert.Null(InjectionConfig.Parse("""{"image":"x","controlPlaneAddress":"https://cp:15012","imagePullSecret":"y"}""", out var unknown));
        Assert.Contains("imagePullSecret", Assert.Single(unknown), StringComparison.Ordinal);
        Assert.Null(InjectionConfig.Parse("{", out var broken));
        Assert.StartsWith("not a valid injection config", Assert.Single(broken), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--webhook-port", "0", "--webhook-dns", "cp.ztm.svc")] // no --injection-config
    [InlineData("--webhook-port", "70000", "--injection-config", "CONFIG", "--webhook-dns", "cp.ztm.svc")]
    [InlineData("--webhook-port", "0", "--injection-config", "CONFIG")] // no DNS names and no namespace to derive them from
    [InlineData("--webhook-port", "0", "--injection-config", "CONFIG", "--webhook-dns", "Not_A_Name")]
    [InlineData("--webhook-port", "0", "--injection-config", "BAD", "--webhook-dns", "cp.ztm.svc")]
    [InlineData("--webhook-port", "0", "--injection-config", "MISSING", "--webhook-dns", "cp.ztm.svc")]
    [InlineData("--injection-config", "CONFIG")] // without --webhook-port
    [InlineData("--namespace", "Ztm_System")]
    [InlineData("--webhook-configuration", "Bad Name")]
    public void Bad_webhook_flags_exit_2_before_anything_runs(params string[] args)
    {
        using var dir = new TempDir();
        var (code, ran) = Run(dir, args);

        Assert.Equal(CommandLineOptions.UsageError, code);
        Assert.Null(ran);
    }

    [Fact]
    public void Good_webhook_flags_reach_the_options_with_names_from_the_namespace()
    {
        using var dir = new TempDir();
        var (code, options) = Run(dir, ["--webhook-port", "0", "--injection-config", "CONFIG", "--namespace", "ztm-system"]);

        Assert.Equal(0, code);
        Assert.Equal(0, options!.Webhook!.Port);
        Assert.Equal(["ztm-controlplane.ztm-system.svc", "ztm-controlplane.ztm-system.svc.cluster.local"], options.Webhook.DnsNames);
        Assert.Equal("ztm-system", options.Namespace);
        Assert.Equal("ztm-sidecar:0.1.0", options.Webhook.Injection.Image);
        Assert.Null(options.WebhookConfiguration);
    }

    [Fact]
    public void The_serving_certificate_is_renewed_past_half_its_lifetime()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));
        var certificate = new WebhookCertificate(MeshCa.Create(time), ["cp.ztm-system.svc"]);
        var first = certificate.Current.TargetCertificate;

        time.Advance(WebhookCertificate.Lifetime / 2 - TimeSpan.FromMinutes(1));
        Assert.Same(first, certificate.Current.TargetCertificate);
        time.Advance(TimeSpan.FromMinutes(2));
        var second = certificate.Current.TargetCertificate;

        Assert.NotEqual(first.SerialNumber, second.SerialNumber);
        Assert.True(second.NotAfter > first.NotAfter);
        Assert.Equal(["cp.ztm-system.svc"], second.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single().EnumerateDnsNames());
    }

    private static (int Code, ControlPlaneOptions? Options) Run(TempDir dir, string[] args)
    {
        var config = Path.Combine(dir.Path, "config.json");
        File.WriteAllText(config, InjectionFixtures.ConfigJson);
        var bad = Path.Combine(dir.Path, "bad.json");
        File.WriteAllText(bad, """{"image":""}""");
        var resolved = args.Select(a => a switch
        {
            "CONFIG" => config,
            "BAD" => bad,
            "MISSING" => Path.Combine(dir.Path, "missing.json"),
            _ => a,
        }).Concat(["--data-dir", Path.Combine(dir.Path, "data")]).ToArray();
        ControlPlaneOptions? ran = null;
        var error = Console.Error;
        Console.SetError(TextWriter.Null); // the one line each refusal prints is not this test's subject
        try
        {
            var code = CommandLineOptions.Run(ControlPlaneOptions.Command((options, _) =>
            {
                ran = options;
                return Task.FromResult(0);
            }), resolved);
            return (code, ran);
        }
        finally
        {
            Console.SetError(error);
        }
    }

    private sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("ztm-injection-").FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
