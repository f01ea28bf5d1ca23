using System.Globalization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.RateLimiting;

/// <summary>
/// RateLimitPolicy, enforced (compiled only when a resource selects the workload): one token per caller identity
/// (plaintext callers share one) from each bucket that applies, else 429 with Retry-After.
/// </summary>
internal sealed class RateLimitStage(RateLimits limits, SidecarMetrics metrics) : IInboundStage
{
    public string Summary => $"{limits.PolicyCount.ToString(CultureInfo.InvariantCulture)} policies";

    public ValueTask<StageResult> RunAsync(InboundRequest request, CancellationToken cancellation)
    {
        var limit = limits.TryAcquire(request.CallerName, request.Method, request.Path);
        if (limit.Allowed)
        {
            return ValueTask.FromResult(StageResult.Continue);
        }
        metrics.RateLimited(limit.Policy!);
        var retryAfter = limit.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        return ValueTask.FromResult(StageResult.Refuse(new Refusal(StatusCodes.Status429TooManyRequests, "rate_limited",
            $"rate limited by policy {limit.Policy}: retry in {retryAfter}s") { Header = ("Retry-After", retryAfter) }));
    }
}

internal sealed class RateLimitStageKind(TokenBuckets buckets, SidecarMetrics metrics) : IInboundStageKind
{
    public PolicyKind Kind => RateLimitPolicyKind.Instance;

    public int Order => InboundStageOrder.RateLimits;

    public IInboundStage? Compile(IReadOnlyList<PolicyResource> resources, StageContext context) =>
        resources.Count == 0 ? null : new RateLimitStage(RateLimits.Compile(context.Workload, resources.Cast<RateLimitPolicy>(), buckets), metrics);
}
