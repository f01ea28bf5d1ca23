using Grpc.Core;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Inbound;

namespace ZeroTrustMesh.Sidecar.Config;

/// <summary>
/// Follows the control plane's config stream for this workload (policies, revocations, trust bundle):
/// 1. once the sidecar has its certificate, open the stream (mTLS) and say which version it enforces (and, in every
///    answer, which trust bundle it follows: a CA rotation activates a new root only once every sidecar trusts it);
/// 2. for every snapshot: apply the revocation list first, and even when the rest is NACKed (it only ever refuses more
///    peers, and a policy error must not keep a revoked peer in); read each resource's typed model with the kind this
///    sidecar enforces it with (a kind it does not know is NACKed); compile the inbound stages for this workload
///    (<see cref="InboundSnapshot.Compile"/>) and swap them as one <see cref="InboundSnapshot"/>, then ACK. Anything it
///    cannot apply is NACKed with the reason and the last good snapshot stays;
/// 3. when the stream breaks, keep enforcing the last good snapshot and reconnect with backoff and jitter.
/// Until the first snapshot arrives the state holds an empty one: STRICT, no ALLOW policy, so everything is denied.
/// </summary>
internal sealed class ConfigWatcher(
    SidecarOptions options,
    IdentityState state,
    CertificateRotator rotator,
    InboundSnapshotState snapshots,
    TimeProvider time,
    ILogger<ConfigWatcher> logger) : BackgroundService
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
        using var channel = ControlPlaneChannel.Create(options.ControlPlane, () => state.Bundle ?? options.BootstrapBundle, () => state.Valid?.Certificate, time);
        var client = new MeshConfig.MeshConfigClient(channel);

        for (var attempt = 1; !stopping.IsCancellationRequested; attempt++)
        {
            try
            {
                using var call = client.Stream(cancellationToken: stopping);
                await call.RequestStream.WriteAsync(new ConfigRequest { VersionApplied = snapshots.Current.Version, TrustBundleSequence = state.Bundle?.Sequence ?? 0 }, stopping);
                while (await call.ResponseStream.MoveNext(stopping))
                {
                    attempt = 1;
                    var snapshot = call.ResponseStream.Current;
                    var error = Apply(snapshot, workload);
                    await call.RequestStream.WriteAsync(new ConfigRequest
                    {
                        VersionApplied = snapshots.Current.Version,
                        ResponseNonce = snapshot.Nonce,
                        Error = error ?? "",
                        TrustBundleSequence = state.Bundle?.Sequence ?? 0, // a CA rotation waits for every sidecar to follow its bundle
                    }, stopping);
                }
            }
            catch (Exception e) when (e is RpcException or IOException or InvalidOperationException && !stopping.IsCancellationRequested)
            {
                if (e is RpcException refused)
                {
                    state.NoteRefusal(refused); // a revoked certificate: not ready from now on
                }
                var delay = RotationSchedule.RetryDelay(attempt, time.GetUtcNow(), DateTimeOffset.MaxValue, Random.Shared.NextDouble());
                SidecarLog.ConfigStreamFailed(logger, e is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message, delay.TotalSeconds);
                await Task.Delay(delay, time, stopping);
            }
            catch (Exception) when (stopping.IsCancellationRequested)
            {
                // Shutting down: the stream was cancelled by us, not broken.
                return;
            }
        }
    }

    /// <summary>Applies one snapshot; returns the NACK reason, or null when it is now enforced.</summary>
    private string? Apply(ConfigSnapshot snapshot, WorkloadRef workload)
    {
        try
        {
            var revocations = RevocationMapping.FromProto(snapshot.Revocations);
            if (revocations.Count != state.Revocations.Count || !revocations.Entries.SequenceEqual(state.Revocations.Entries))
            {
                state.Revocations = revocations;
                SidecarLog.RevocationsApplied(logger, snapshot.Version, revocations.Count);
            }
            state.ApplyBundle(snapshot.TrustBundle, snapshot.Version);
        }
        catch (FormatException e)
        {
            return Refuse(snapshot, e.Message);
        }

        InboundSnapshot compiled;
        try
        {
            compiled = snapshots.Compile(snapshot, workload);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        {
            return Refuse(snapshot, e.Message);
        }
        snapshots.Update(compiled);
        foreach (var kind in snapshots.Kinds)
        {
            kind.Applied(compiled.Stages.FirstOrDefault(s => s.Kind == kind)?.Stage);
        }
        _first.TrySetResult();
        SidecarLog.ConfigApplied(logger, snapshot.Version, compiled.ResourceCount, compiled.Summary);
        return null;
    }

    private string Refuse(ConfigSnapshot snapshot, string reason)
    {
        SidecarLog.ConfigRefused(logger, snapshot.Version, reason, snapshots.Current.Version);
        return reason;
    }
}
