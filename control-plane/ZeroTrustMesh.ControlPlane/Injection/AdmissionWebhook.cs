using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Microsoft.AspNetCore.Http.Features;
using ZeroTrustMesh.ControlPlane.Telemetry;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>
/// The <c>/inject</c> endpoint: an <c>admission.k8s.io/v1</c> AdmissionReview in, the same kind out with the request's
/// uid and, for an injected pod, a base64 JSONPatch. What is not a well-formed review gets an HTTP error, never a crash:
/// 415 for another content type, 413 past <see cref="MaxBodyBytes"/>, 400 for bad JSON or a review without a request,
/// a uid or an object. Every answer is counted in <c>ztm_injection_requests_total{outcome}</c>.
/// </summary>
internal sealed class AdmissionWebhook(SidecarInjector injector, ControlPlaneMetrics metrics, ILogger<AdmissionWebhook> logger)
{
    public const string Path = "/inject";

    /// <summary>Largest AdmissionReview read (the API server's own request limit is 3 MiB; a pod is far smaller).</summary>
    public const int MaxBodyBytes = 4 * 1024 * 1024;

    public async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        if (!IsJson(request.ContentType))
        {
            await FailAsync(context, StatusCodes.Status415UnsupportedMediaType, $"content type '{request.ContentType}' is not application/json");
            return;
        }
        if (request.ContentLength > MaxBodyBytes)
        {
            await FailAsync(context, StatusCodes.Status413PayloadTooLarge, $"the review is {request.ContentLength} bytes; at most {MaxBodyBytes} are read");
            return;
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = MaxBodyBytes + 1L; // this endpoint reads at most that; the cap below answers
        }

        byte[] body;
        try
        {
            body = await ReadCappedAsync(request.Body, context.RequestAborted);
        }
        catch (InvalidDataException)
        {
            await FailAsync(context, StatusCodes.Status413PayloadTooLarge, $"the review is larger than {MaxBodyBytes} bytes");
            return;
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await FailAsync(context, StatusCodes.Status413PayloadTooLarge, $"the review is larger than {MaxBodyBytes} bytes");
            return;
        }

        JsonNode? review;
        try
        {
            review = JsonNode.Parse(body);
        }
        catch (JsonException e)
        {
            await FailAsync(context, StatusCodes.Status400BadRequest, $"not JSON: {e.Message}");
            return;
        }
        if (review is not JsonObject reviewObject || Text(reviewObject["apiVersion"]) != "admission.k8s.io/v1" || Text(reviewObject["kind"]) != "AdmissionReview")
        {
            await FailAsync(context, StatusCodes.Status400BadRequest, "not an admission.k8s.io/v1 AdmissionReview");
            return;
        }
        if (reviewObject["request"] is not JsonObject admission)
        {
            await FailAsync(context, StatusCodes.Status400BadRequest, "the AdmissionReview has no request");
            return;
        }
        if (Text(admission["uid"]) is not { Length: > 0 } uid)
        {
            await FailAsync(context, StatusCodes.Status400BadRequest, "the AdmissionReview request has no uid");
            return;
        }

        // Only pods being created get the mesh; anything else the webhook may be sent is let through untouched.
        var kind = admission["kind"] as JsonObject;
        var isPod = kind is not null && Text(kind["group"]) is null or "" && Text(kind["version"]) == "v1" && Text(kind["kind"]) == "Pod";
        var operation = Text(admission["operation"]);
        if (!isPod || operation != "CREATE")
        {
            metrics.InjectionRequest("skipped");
            await RespondAsync(context, uid, allowed: true, patch: null, message: null);
            return;
        }
        if (admission["object"] is not JsonObject podObject)
        {
            await FailAsync(context, StatusCodes.Status400BadRequest, "the AdmissionReview request has no object");
            return;
        }

        V1Pod pod;
        try
        {
            pod = KubernetesJson.Deserialize<V1Pod>(podObject);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or NotSupportedException or ArgumentException or OverflowException)
        {
            await FailAsync(context, StatusCodes.Status400BadRequest, $"the object is not a pod: {e.Message}");
            return;
        }

        if (SidecarInjector.ShapeProblem(pod) is { } problem)
        {
            await FailAsync(context, StatusCodes.Status400BadRequest, $"the object is not a pod: {problem}");
            return;
        }

        var podNamespace = Text(admission["namespace"]) ?? pod.Metadata?.NamespaceProperty ?? "default";
        var podName = pod.Metadata?.Name ?? (pod.Metadata?.GenerateName is { } generated ? generated + "*" : Text(admission["name"]) ?? "(unnamed)");
        var result = injector.Inject(pod, podNamespace);
        switch (result.Decision)
        {
            case InjectionDecision.Injected:
                metrics.InjectionRequest("injected");
                InjectionLog.Injected(logger, podNamespace, podName);
                await RespondAsync(context, uid, allowed: true, result.Patch, message: null);
                break;
            case InjectionDecision.Skipped:
                metrics.InjectionRequest("skipped");
                InjectionLog.Skipped(logger, podNamespace, podName, result.Reason);
                await RespondAsync(context, uid, allowed: true, patch: null, message: null);
                break;
            default:
                metrics.InjectionRequest("refused");
                InjectionLog.Refused(logger, podNamespace, podName, result.Reason);
                await RespondAsync(context, uid, allowed: false, patch: null, message: result.Reason);
                break;
        }
    }

    private static bool IsJson(string? contentType) =>
        contentType is not null && contentType.Split(';', 2)[0].Trim().Equals("application/json", StringComparison.OrdinalIgnoreCase);

    private static string? Text(JsonNode? node) => node is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;

    /// <summary>The body, or <see cref="InvalidDataException"/> once it passes <see cref="MaxBodyBytes"/> (a chunked body has no length to check first).</summary>
    private static async Task<byte[]> ReadCappedAsync(Stream body, CancellationToken cancellation)
    {
        var buffer = new ArrayBufferWriter<byte>(16 * 1024);
        while (true)
        {
            var memory = buffer.GetMemory(16 * 1024);
            var read = await body.ReadAsync(memory, cancellation);
            if (read == 0)
            {
                return buffer.WrittenSpan.ToArray();
            }
            buffer.Advance(read);
            if (buffer.WrittenCount > MaxBodyBytes)
            {
                throw new InvalidDataException("too large");
            }
        }
    }

    private static async Task RespondAsync(HttpContext context, string uid, bool allowed, JsonArray? patch, string? message)
    {
        var response = new JsonObject { ["uid"] = uid, ["allowed"] = allowed };
        if (patch is not null)
        {
            response["patchType"] = "JSONPatch";
            response["patch"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(patch.ToJsonString()));
        }
        if (message is not null)
        {
            response["status"] = new JsonObject { ["code"] = StatusCodes.Status400BadRequest, ["reason"] = "BadRequest", ["message"] = message };
        }
        var review = new JsonObject { ["apiVersion"] = "admission.k8s.io/v1", ["kind"] = "AdmissionReview", ["response"] = response };
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(review.ToJsonString(), context.RequestAborted);
    }

    private async Task FailAsync(HttpContext context, int status, string message)
    {
        metrics.InjectionRequest("error");
        InjectionLog.BadReview(logger, status, message, context.Connection.RemoteIpAddress?.ToString() ?? "?");
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        await context.Response.WriteAsync(message + "\n", context.RequestAborted);
    }
}
