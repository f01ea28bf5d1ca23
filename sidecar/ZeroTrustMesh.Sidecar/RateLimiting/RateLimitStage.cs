using System.Globalization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.RateLimiting;

/// <summary>
/// RateLimitPolicy, enforced (compiled only when a resource selects the workload): one token per caller identity
/// (plaintext callers share one) from each bucket that applies, else 429 with Retry-After. Before them, the caller
/// restrictions anomaly response pushed (<see cref="CallerRestrictions"/>): 403 for a quarantined caller, 429 for a
/// throttled one beyond its rate.
/// </summary>
internal sealed class RateLimitStage(RateLimits limits, CallerRestrictions restrictions, SidecarMetrics metrics) : IInboundStage
{
    public string Summary => $"{limits.PolicyCount.ToString(CultureInfo.InvariantCulture)} policies, {restrictions.Count.ToString(CultureInfo.InvariantCulture)} caller restrictions";

    public ValueTask<StageResult> RunAsync(InboundRequest request, CancellationToken cancellation)
    {
        var path = request.Path.AsSpan();
        var query = path.IndexOfAny('?', '#');
        if (query >= 0)
        {
            path = path[..query];
        }
        if (restrictions.Check(request, path) is { } restricted)
        {
            metrics.RateLimited(CallerRestrictionsLabel);
            return ValueTask.FromResult(StageResult.Refuse(restricted));
        }
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

    /// <summary>The <c>policy</c> label of <c>ztm_rate_limited_total</c> for refusals by anomaly response (no namespace/name has no slash).</summary>
    public const string CallerRestrictionsLabel = "anomaly-response";
}

internal sealed class RateLimitStageKind(TokenBuckets buckets, SidecarMetrics metrics) : IInboundStageKind
{
    public PolicyKind Kind => RateLimitPolicyKind.Instance;

    public int Order => InboundStageOrder.RateLimits;

    public IInboundStage? Compile(IReadOnlyList<PolicyResource> resources, StageContext context) =>
        resources.Count == 0 && context.Restrictions.Count == 0 ? null
        : new RateLimitStage(RateLimits.Compile(context.Workload, resources.Cast<RateLimitPolicy>(), buckets), CallerRestrictions.Compile(context.Restrictions, buckets), metrics);
}
