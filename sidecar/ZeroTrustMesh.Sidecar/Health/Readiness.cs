using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.Health;

/// <summary>
/// Whether the sidecar may take traffic: a valid certificate and a first policy snapshot (fail closed until both),
/// and not stopping. The same answer on the admin port and the health port.
/// </summary>
internal sealed class Readiness(IdentityState identity, Config.ConfigWatcher config, IHostApplicationLifetime lifetime)
{
    public bool IsReady => identity.IsReady && config.HasSnapshot && !lifetime.ApplicationStopping.IsCancellationRequested;

    public IResult Answer() =>
        IsReady ? Results.Text("ready\n")
        : Results.Text(
            lifetime.ApplicationStopping.IsCancellationRequested ? "not ready: draining\n"
            : identity.Current is null ? "not ready: no certificate yet\n"
            : identity.RevokedReason is { } revoked ? $"not ready: certificate revoked: {revoked}\n"
            : !identity.IsReady ? "not ready: certificate expired\n"
            : "not ready: no policy from the control plane yet\n",
            statusCode: StatusCodes.Status503ServiceUnavailable);
}
