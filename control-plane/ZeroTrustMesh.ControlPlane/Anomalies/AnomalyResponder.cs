using System.Collections.Immutable;
using System.Threading.Channels;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Kinds;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary>
/// Carries out what the detector decided, on every replica (a replica that does not lead has the leader's decisions
/// through <see cref="AnomalyStateSync"/>):
/// 1. the restrictions of Enforce policies become a new config version (<see cref="ConfigStore.PublishRestrictions"/>;
///    the replicas agree on its number), pushed at once to this replica's sidecars of the workloads concerned, which
///    enforce them in their rate-limit stage;
/// 2. on the leader only (the revocations are shared), a new quarantine under <c>revokeOnQuarantine</c> revokes the
///    caller's certificates (<see cref="Revoker"/>, by SPIFFE ID); JWT subjects and plaintext callers have none to revoke.
/// At start it publishes the detector's current set; off the request path (the detector only signals).
/// </summary>
internal sealed class AnomalyResponder(
    AnomalyDetector detector, IAnomalyPolicies policies, ConfigStore config, Revoker revoker, AnomalyMetrics metrics, IReplicaLeadership leadership, ILogger<AnomalyResponder> logger)
    : BackgroundService
{
    public const string Actor = "anomaly-response";

    private readonly HashSet<(string Caller, string Since)> _revoked = [];

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        var signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropOldest });
        void OnChanged(ImmutableArray<CallerRestriction> _) => signal.Writer.TryWrite(true);
        detector.RestrictionsChanged += OnChanged;
        try
        {
            Apply(detector.Restrictions);
            while (await signal.Reader.WaitToReadAsync(stopping))
            {
                signal.Reader.TryRead(out _);
                Apply(detector.Restrictions);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // stopping
        }
        finally
        {
            detector.RestrictionsChanged -= OnChanged;
        }
    }

    private void Apply(ImmutableArray<CallerRestriction> restrictions)
    {
        var state = config.PublishRestrictions(restrictions, Actor,
            [.. restrictions.Select(r => $"{(r.Action == RestrictionAction.Quarantine ? "quarantine" : "throttle")} {r.Principal} -> {r.Workload} {r.Route}")],
            $"{restrictions.Length} caller restriction(s) in force");
        var quarantines = restrictions.Count(r => r.Action == RestrictionAction.Quarantine);
        metrics.Restrictions(restrictions.Length - quarantines, quarantines);
        AnomalyLog.Pushed(logger, restrictions.Length - quarantines, quarantines, state.Version);
        if (!leadership.IsLeading)
        {
            return;
        }
        foreach (var restriction in restrictions.Where(r => r.Action == RestrictionAction.Quarantine && r.Subject.Length == 0))
        {
            if (policies.For(restriction.Workload) is not { Spec.RevokeOnQuarantine: true }
                || !SpiffeId.TryParse(restriction.Caller, out var id, out _) || !id.TryGetWorkload(out _, out _)
                || !_revoked.Add((restriction.Caller, restriction.Reason)))
            {
                continue;
            }
            try
            {
                revoker.Revoke(null, restriction.Caller, restriction.Reason, Actor);
            }
            catch (Exception e) when (e is RevocationRefusedException or IOException)
            {
                AnomalyLog.RevocationFailed(logger, restriction.Caller, e.Message);
            }
        }
    }
}
