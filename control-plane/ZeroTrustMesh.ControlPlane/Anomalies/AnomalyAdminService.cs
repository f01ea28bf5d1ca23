using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Anomalies;

/// <summary><c>ztmctl anomalies</c>: a thin adapter over the detector's state; the operator credential is checked by <see cref="Api.OperatorOnlyInterceptor"/>.</summary>
internal sealed class AnomalyAdminService(AnomalyDetector detector, IReplicaLeadership leadership) : AnomalyAdmin.AnomalyAdminBase
{
    public override Task<AnomalyListResponse> List(AnomalyListRequest request, ServerCallContext context)
    {
        var (current, events) = detector.Snapshot();
        var response = new AnomalyListResponse
        {
            Replica = leadership.Identity,
            Leading = leadership.IsLeading,
            Untracked = (ulong)detector.Untracked,
            Tracked = (uint)detector.TrackCount,
        };
        response.Current.AddRange(current.Select(s => new AnomalyCurrent
        {
            Caller = s.Key.Principal,
            Workload = s.Key.Workload.ToString(),
            Route = s.Key.Route,
            State = AnomalyMetrics.Label(s.State),
            Since = Timestamp.FromDateTimeOffset(s.Since),
            Policy = s.Policy,
            Mode = s.Mode.ToString(),
            Evidence = ToProto(s.Evidence),
        }));
        response.Transitions.AddRange(events.Select(e => new AnomalyTransition
        {
            Id = (ulong)e.Id,
            At = Timestamp.FromDateTimeOffset(e.At),
            Caller = e.Key.Principal,
            Workload = e.Key.Workload.ToString(),
            Route = e.Key.Route,
            From = AnomalyMetrics.Label(e.From),
            To = AnomalyMetrics.Label(e.To),
            Policy = e.Policy,
            Mode = e.Mode.ToString(),
            Reason = e.Reason,
            Action = e.Action,
            Evidence = ToProto(e.Evidence),
        }));
        return Task.FromResult(response);
    }

    private static AnomalyEvidenceProto ToProto(AnomalyEvidence e) => new()
    {
        RatePerMinute = e.RatePerMinute,
        BaselinePerMinute = e.BaselinePerMinute,
        ErrorRatio = e.ErrorRatio,
        BaselineErrorRatio = e.BaselineErrorRatio,
        Requests = (ulong)e.Requests,
        Share = e.Share,
        Multiple = e.Multiple,
        MinimumRate = (uint)e.MinimumRate,
        MaxErrorRatio = e.MaxErrorRatio,
        HistorySeconds = e.History.TotalSeconds,
    };
}
