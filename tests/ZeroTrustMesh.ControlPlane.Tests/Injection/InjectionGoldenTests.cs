using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Injection;

/// <summary>
/// One fixture file per case in <c>testdata/</c>: an AdmissionReview in (<c>review</c>), optionally injection-config
/// fields that replace the example config's (<c>config</c>), and what must come out
/// (<c>expected</c>): the exact pod after applying the returned JSONPatch to the review's pod, or the refusal's message,
/// or that the pod was let through unchanged. Every patched pod must deserialize strictly into <c>V1Pod</c>.
/// <c>ZTM_UPDATE_GOLDEN=1 dotnet test --filter InjectionGoldenTests</c> rewrites <c>expected</c> from what the injector
/// does now; read every changed file before committing it.
/// </summary>
public sealed class InjectionGoldenTests
{
    private static readonly bool Update = Environment.GetEnvironmentVariable("ZTM_UPDATE_GOLDEN") == "1";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(InjectionFixtures.TestData, "*.json").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileNameWithoutExtension(file));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Review_gives_the_expected_pod(string name)
    {
        var path = Path.Combine(InjectionFixtures.TestData, name + ".json");
        var fixture = JsonNode.Parse(await File.ReadAllTextAsync(path))!.AsObject();
        var review = fixture["review"]!.AsObject();
        var pod = review["request"]!["object"]!;

        var (status, body) = await InjectionFixtures.CallAsync(InjectionFixtures.Webhook(config: fixture["config"]?.AsObject()), review.ToJsonString());

        Assert.Equal(200, status);
        var response = JsonNode.Parse(body)!["response"]!.AsObject();
        Assert.Equal(review["request"]!["uid"]!.GetValue<string>(), response["uid"]!.GetValue<string>());
        var actual = Outcome(response, pod);

        if (Update)
        {
            fixture["expected"] = actual;
            await File.WriteAllTextAsync(path, fixture.ToJsonString(Indented) + "\n");
            return;
        }
        var expected = fixture["expected"];
        Assert.True(JsonNode.DeepEquals(expected, actual), $"{name}: the outcome differs from the fixture.\nexpected:\n{expected?.ToJsonString(Indented)}\nactual:\n{actual.ToJsonString(Indented)}");
    }

    /// <summary>What a review's answer amounts to: the patched pod (checked strictly), a refusal, or a pod let through as it was.</summary>
    private static JsonObject Outcome(JsonObject response, JsonNode pod)
    {
        if (!response["allowed"]!.GetValue<bool>())
        {
            Assert.Null(response["patch"]);
            return new JsonObject { ["outcome"] = "refused", ["message"] = response["status"]!["message"]!.GetValue<string>() };
        }
        if (response["patch"] is null)
        {
            Assert.Null(response["patchType"]);
            return new JsonObject { ["outcome"] = "unchanged" };
        }
        Assert.Equal("JSONPatch", response["patchType"]!.GetValue<string>());
        var patch = JsonNode.Parse(Encoding.UTF8.GetString(Convert.FromBase64String(response["patch"]!.GetValue<string>())));
        var patched = JsonPatch.Apply(pod, patch)!;
        InjectionFixtures.StrictPod(patched); // throws on any field the Kubernetes model does not have
        return new JsonObject { ["outcome"] = "injected", ["pod"] = patched };
    }
}
