namespace ZeroTrustMesh.Sidecar.Health;

/// <summary>
/// The health port (<c>--health-port</c>, 15021 when injected): plain HTTP on every address, for kubelet and
/// Prometheus, which reach the pod from outside it. Readiness, metrics and the app's rewritten probes; nothing that
/// tells what the sidecar holds (that stays on the loopback admin port).
/// </summary>
internal sealed class HealthPort(Readiness readiness, AppProbes probes, AppProber prober, Telemetry.SidecarMetrics metrics)
{
    public async Task HandleAsync(HttpContext context)
    {
        var path = context.Request.Path.Value ?? "";
        if (!HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method))
        {
            await Results.Text("the health port answers GET only\n", statusCode: StatusCodes.Status405MethodNotAllowed).ExecuteAsync(context);
            return;
        }
        if (path == "/healthz/ready")
        {
            await readiness.Answer().ExecuteAsync(context);
        }
        else if (path == "/metrics")
        {
            await metrics.WriteAsync(context);
        }
        else if (probes.ByPath.TryGetValue(path, out var probe))
        {
            var outcome = await prober.RunAsync(probe, context.RequestAborted);
            // The app's own status goes back as it is; a 204 or 304 carries no body, so the reason cannot go with it.
            await (outcome.Status is StatusCodes.Status204NoContent or StatusCodes.Status304NotModified or < 200
                ? Results.StatusCode(outcome.Status)
                : Results.Text(outcome.Reason + "\n", statusCode: outcome.Status)).ExecuteAsync(context);
        }
        else
        {
            await Results.Text(path.StartsWith(AppProbes.PathPrefix, StringComparison.Ordinal)
                ? $"no app probe at {path} (the injector lists them in {AppProbes.Variable})\n"
                : $"not found: {path} (the health port serves /healthz/ready, /metrics and {AppProbes.PathPrefix}…)\n",
                statusCode: StatusCodes.Status404NotFound).ExecuteAsync(context);
        }
    }
}
