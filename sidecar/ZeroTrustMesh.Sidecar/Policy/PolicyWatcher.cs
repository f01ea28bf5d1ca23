using Grpc.Core;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Yaml;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Authentication;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.RateLimiting;

namespace ZeroTrustMesh.Sidecar.Policy;

/// <summary>
/// Follows the control plane's config stream for this workload:
/// 1. once the sidecar has its certificate, open the stream (mTLS) and say which version it enforces;
/// 2. for every snapshot: read and validate the resources, compile for this workload the AuthorizationPolicies, the
///    RequestAuthentications' JWT rules (inline JWKS parsed now; remote ones fetched in the background), the
///    RateLimitPolicies and the PeerAuthentication (STRICT or PERMISSIVE: read by the inbound listener for each new
///    connection), swap them as one <see cref="InboundPolicy"/>, and ACK; anything it cannot apply is
///    NACKed with the reason and the last good snapshot stays. The revocation list is applied first and even when the
///    rest is NACKed: it only ever refuses more peers, and a policy error must not keep a revoked peer in;
/// 3. when the stream breaks, keep enforcing the last good snapshot and reconnect with backoff and jitter.
/// Until the first snapshot arrives the state holds an empty one: no ALLOW policy, so everything is denied.
/// </summary>
internal sealed class PolicyWatcher(
    SidecarOptions options,
    IdentityState state,
    CertificateRotator rotator,
    InboundPolicyState policy,
    JwksCache jwks,
    TokenBuckets buckets,
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
        using var channel = ControlPlaneChannel.Create(options.ControlPlane, () => state.Bundle ?? options.BootstrapBundle, () => state.Valid?.Certificate, time);
        var client = new MeshConfig.MeshConfigClient(channel);

        for (var attempt = 1; !stopping.IsCancellationRequested; attempt++)
        {
            try
            {
                using var call = client.Stream(cancellationToken: stopping);
                await call.RequestStream.WriteAsync(new ConfigRequest { VersionApplied = policy.Current.Version }, stopping);
                while (await call.ResponseStream.MoveNext(stopping))
                {
                    attempt = 1;
                    var snapshot = call.ResponseStream.Current;
                    var error = Apply(snapshot, workload);
                    await call.RequestStream.WriteAsync(new ConfigRequest
                    {
                        VersionApplied = policy.Current.Version,
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
            SidecarLog.ConfigRefused(logger, snapshot.Version, e.Message, policy.Current.Version);
            return e.Message;
        }

        var read = PolicyYaml.Load(snapshot.Resources.Select(r => KeyValuePair.Create(r.Key, r.Yaml)));
        if (read.Errors.Length > 0)
        {
            var reason = string.Join("; ", read.Errors.Select(e => e.ToString()));
            SidecarLog.ConfigRefused(logger, snapshot.Version, reason, policy.Current.Version);
            return reason;
        }
        var resources = read.Documents.Select(d => d.Resource).ToList();
        InboundPolicy compiled;
        try
        {
            compiled = new InboundPolicy(
                PolicyCompiler.Compile(snapshot.Version, workload, resources.OfType<AuthorizationPolicy>(), options.ProbePaths),
                JwtAuthenticator.Compile(workload, resources.OfType<RequestAuthentication>(), jwks, time),
                RateLimits.Compile(workload, resources.OfType<RateLimitPolicy>(), buckets),
                PeerAuthenticationPolicy.Compile(workload, resources.OfType<PeerAuthentication>()));
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        {
            SidecarLog.ConfigRefused(logger, snapshot.Version, e.Message, policy.Current.Version);
            return e.Message;
        }
        policy.Update(compiled);
        jwks.Retain(JwtAuthenticator.RemoteUris(compiled.Authentication));
        _first.TrySetResult();
        SidecarLog.ConfigApplied(logger, snapshot.Version, snapshot.Resources.Count, compiled.Authorization.PolicyCount,
            compiled.Authentication.IssuerCount, compiled.RateLimits.PolicyCount, compiled.PeerAuthentication.ToString());
        return null;
    }
}
