using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Proto;

/// <summary>The one mapping between <see cref="Policy.Kinds.CallerRestriction"/> and its wire form (scoped to the receiving workload).</summary>
public static class RestrictionMapping
{
    public const int MaxRouteLength = 2048;

    public static V1.CallerRestriction ToProto(this CallerRestriction restriction) => new()
    {
        Caller = restriction.Caller,
        Subject = restriction.Subject,
        Route = restriction.Route,
        Action = restriction.Action == RestrictionAction.Quarantine ? V1.CallerRestrictionAction.Quarantine : V1.CallerRestrictionAction.Throttle,
        RequestsPerMinute = (uint)Math.Max(0, restriction.RequestsPerMinute),
        Reason = restriction.Reason,
    };

    /// <summary>The model of a received restriction for <paramref name="workload"/>; <see cref="FormatException"/> for one that cannot be enforced.</summary>
    public static CallerRestriction FromProto(V1.CallerRestriction restriction, WorkloadRef workload)
    {
        ArgumentNullException.ThrowIfNull(restriction);
        if (restriction.Caller.Length == 0 && restriction.Subject.Length == 0)
        {
            throw new FormatException("caller restriction: names neither a caller nor a subject");
        }
        if (restriction.Route.Length == 0 || restriction.Route.Length > MaxRouteLength || (restriction.Route != CallerRestriction.EveryRoute && restriction.Route[0] != '/'))
        {
            throw new FormatException($"caller restriction of '{restriction.Caller}{restriction.Subject}': route '{restriction.Route}' is neither '*' nor a path");
        }
        var action = restriction.Action switch
        {
            V1.CallerRestrictionAction.Throttle when restriction.RequestsPerMinute is > 0 and <= int.MaxValue => RestrictionAction.Throttle,
            V1.CallerRestrictionAction.Throttle => throw new FormatException($"caller restriction of '{restriction.Caller}{restriction.Subject}': a throttle needs requests_per_minute above 0"),
            V1.CallerRestrictionAction.Quarantine => RestrictionAction.Quarantine,
            _ => throw new FormatException($"caller restriction of '{restriction.Caller}{restriction.Subject}': unknown action {restriction.Action}"),
        };
        return new CallerRestriction(workload, restriction.Caller, restriction.Subject, restriction.Route, action, (int)restriction.RequestsPerMinute, restriction.Reason);
    }
}
