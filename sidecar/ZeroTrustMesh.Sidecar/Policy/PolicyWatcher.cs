using Grpc.Core;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Yaml;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.Policy;

/// <summary>
/// Follows the control plane's config stream for this workload:
/// 1. once the sidecar has its certificate, open the stream (mTLS) and say which version it enforces;
/// 2. for every snapshot: read and validate the resources, compile them for this workload, swap the authorizer's
///    snapshot atomically, and ACK; anything it cannot apply is NACKed with the reason and the last good snapshot stays;
/// 3. when the stream breaks, keep enforcing the last good snapshot and reconnect with backoff and jitter.
/// Until the first snapshot arrives the authorizer holds an empty one: no ALLOW policy, so everything is denied.
/// </summary>
internal sealed class PolicyWatcher(
    SidecarOptions options,
    IdentityState state,
    CertificateRotator rotator,
    Authorizer authorizer,
    TimeProvider time,
    ILogger<PolicyWatcher> logger) : BackgroundService
{
    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when the first snapshot has been applied; readiness waits for it.</summary>
    public Task FirstSnapshot => _first.Task;

    public bool HasSnapshot => _first.Task.IsCompletedSuccessfully;

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        try
        {
            await rotator.FirstIdentity.WaitAsync(stopping);
        }
        catch (Exception) when (!stopping.IsCancellationRequested)
        {
            return;
        }
        state.Current!.Id.TryGetWorkload(out var ns, out var sa);
        var workload = new WorkloadRef(ns!, sa!);
        using var channel = ControlPlaneChannel.Create(options.ControlPlane, () => state.Current?.Bundle ?? options.BootstrapBundle, () => state.Valid?.Certificate, time);
        var client = new MeshConfig.MeshConfigClient(channel);

        for (var attempt = 1; !stopping.IsCancellationRequested; attempt++)
        {
            try
            {
                using var call = client.Stream(cancellationToken: stopping);
                await call.RequestStream.WriteAsync(new ConfigRequest { VersionApplied = authorizer.Snapshot.Version }, stopping);
                while (await call.ResponseStream.MoveNext(stopping))
                {
                    attempt = 1;
                    var snapshot = call.ResponseStream.Current;
                    var error = Apply(snapshot, workload);
                    await call.RequestStream.WriteAsync(new ConfigRequest
                    {
                        VersionApplied = authorizer.Snapshot.Version,
                        ResponseNonce = snapshot.Nonce,
                        Error = error ?? "",
                    }, stopping);
                }
            }
            catch (Exception e) when (e is RpcException or IOException or InvalidOperationException && !stopping.IsCancellationRequested)
            {
                var delay = RotationSchedule.RetryDelay(attempt, time.GetUtcNow(), DateTimeOffset.MaxValue, Random.Shared.NextDouble());
                SidecarLog.ConfigStreamFailed(logger, e is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message, delay.TotalSeconds);
                await Task.Delay(delay, time, stopping);
            }
        }
    }

    /// <summary>Applies one snapshot; returns the NACK reason, or null when it is now enforced.</summary>
    private string? Apply(ConfigSnapshot snapshot, WorkloadRef workload)
    {
        var read = PolicyYaml.Load(snapshot.Resources.Select(r => KeyValuePair.Create(r.Key, r.Yaml)));
        if (read.Errors.Length > 0)
        {
            var reason = string.Join("; ", read.Errors.Select(e => e.ToString()));
            SidecarLog.ConfigRefused(logger, snapshot.Version, reason, authorizer.Snapshot.Version);
            return reason;
        }
        PolicySnapshot compiled;
        try
        {
            compiled = PolicyCompiler.Compile(snapshot.Version, workload,
                read.Documents.Select(d => d.Resource).OfType<AuthorizationPolicy>(), options.ProbePaths);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        {
            SidecarLog.ConfigRefused(logger, snapshot.Version, e.Message, authorizer.Snapshot.Version);
            return e.Message;
        }
        authorizer.Update(compiled);
        _first.TrySetResult();
        SidecarLog.ConfigApplied(logger, snapshot.Version, snapshot.Resources.Count, compiled.PolicyCount);
        return null;
    }
}
