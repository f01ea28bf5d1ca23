using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Registry;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Observations;

/// <summary>What one batch may hold; anything over it is refused with INVALID_ARGUMENT naming the field and the limit.</summary>
internal static class ObservationLimits
{
    /// <summary>Observations in one batch (a sidecar sends up to 500).</summary>
    public const int MaxObservations = 2_000;

    /// <summary>One batch, serialized.</summary>
    public const int MaxBatchBytes = 4 * 1024 * 1024;

    public const int MaxPath = 8_192;
    public const int MaxIdentity = 2_048; // caller, subject, reporter
    public const int MaxMethod = 32;
    public const int MaxName = 512; // policy, rule

    /// <summary>Corrected times older than this (before the batch was received) are clamped to it: a sidecar holds a second's worth, or a full buffer's.</summary>
    public static readonly TimeSpan MaxAge = TimeSpan.FromHours(1);
}

/// <summary>
/// <c>ztm.v1.Observations/Report</c>: one stream per sidecar, a thin adapter in front of every
/// <see cref="IObservationConsumer"/> (issue 19, section 1). For each batch:
/// 1. the stream's caller is a workload with an unrevoked SVID, and the batch's <c>reporter</c> is that SVID
///    (PERMISSION_DENIED naming both otherwise: a sidecar reports only for its own workload);
/// 2. limits: observations per batch, bytes, string lengths (INVALID_ARGUMENT naming the field and the limit);
/// 3. the sequence must increase; numbers skipped are counted as gaps;
/// 4. times are corrected by the reporter's skew (receive time − <c>sent_at</c>) and clamped to
///    [receive time − <see cref="ObservationLimits.MaxAge"/>, receive time];
/// 5. the batch goes to every consumer, and is acked. The stream holds one batch at a time: memory per stream is bounded
///    by <see cref="ObservationLimits.MaxBatchBytes"/>.
/// A refused batch ends the stream with the status; nothing of it reaches a consumer.
/// </summary>
internal sealed class ObservationService(
    WorkloadCaller caller,
    IEnumerable<IObservationConsumer> consumers,
    ObservationMetrics metrics,
    TimeProvider time,
    ILogger<ObservationService> logger) : Proto.V1.Observations.ObservationsBase
{
    private readonly IObservationConsumer[] _consumers = [.. consumers];

    public override async Task Report(IAsyncStreamReader<ObservationBatch> requestStream, IServerStreamWriter<ObservationAck> responseStream, ServerCallContext context)
    {
        var id = caller.Require(context).Id;
        var reporter = new ObservationReporter(id, RegisteredEndpoint.ServiceOf(id)!);
        ObservationLog.StreamOpened(logger, id.Value);
        ulong last = 0;
        try
        {
            while (await requestStream.MoveNext(context.CancellationToken))
            {
                var batch = requestStream.Current;
                var received = time.GetUtcNow();
                if (Check(batch, reporter, last) is { } refusal)
                {
                    metrics.Refused(refusal.Reason);
                    ObservationLog.BatchRefused(logger, id.Value, refusal.Status.StatusCode, refusal.Status.Detail);
                    throw new RpcException(refusal.Status);
                }
                if (batch.Sequence > last + 1)
                {
                    metrics.Gap(batch.Sequence - last - 1);
                }
                last = batch.Sequence;
                if (batch.Dropped > 0)
                {
                    metrics.DroppedBySidecar(batch.Dropped);
                }
                metrics.Clamped(CorrectTimes(batch, received));
                foreach (var consumer in _consumers)
                {
                    try
                    {
                        consumer.Consume(reporter, batch.Observations);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        // A consumer must not throw; if one does, the others and the stream go on.
                        ObservationLog.ConsumerFailed(logger, consumer.GetType().Name, e.Message);
                    }
                }
                metrics.Accepted(batch.Observations.Count);
                await responseStream.WriteAsync(new ObservationAck { Sequence = batch.Sequence, Accepted = (uint)batch.Observations.Count }, context.CancellationToken);
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // the sidecar went away or the server is stopping
        }
    }

    private sealed record BatchRefusal(string Reason, Status Status);

    /// <summary>Why <paramref name="batch"/> is refused, or null: identity, size, sequence, then each observation's fields.</summary>
    private static BatchRefusal? Check(ObservationBatch batch, ObservationReporter reporter, ulong last)
    {
        if (batch.Reporter != reporter.Identity.Value)
        {
            return new("another_identity", new Status(StatusCode.PermissionDenied,
                $"the batch reports for '{Shorten(batch.Reporter)}' but the stream's SVID is '{reporter.Identity}': a sidecar reports only for its own workload"));
        }
        var size = batch.CalculateSize();
        if (size > ObservationLimits.MaxBatchBytes)
        {
            return Invalid("too_large", $"the batch is {size.ToString(CultureInfo.InvariantCulture)} bytes, over the limit of {ObservationLimits.MaxBatchBytes.ToString(CultureInfo.InvariantCulture)}");
        }
        if (batch.Observations.Count > ObservationLimits.MaxObservations)
        {
            return Invalid("too_many", $"observations: {batch.Observations.Count.ToString(CultureInfo.InvariantCulture)} in one batch, over the limit of {ObservationLimits.MaxObservations.ToString(CultureInfo.InvariantCulture)}");
        }
        if (batch.Sequence <= last)
        {
            return Invalid("sequence", $"sequence: {batch.Sequence.ToString(CultureInfo.InvariantCulture)} after {last.ToString(CultureInfo.InvariantCulture)}; it must increase");
        }
        if (!Valid(batch.SentAt))
        {
            return Invalid("malformed", "sent_at: required, a valid timestamp (the sidecar's clock when it sent the batch)");
        }
        for (var i = 0; i < batch.Observations.Count; i++)
        {
            if (FieldError(batch.Observations[i]) is { } error)
            {
                return Invalid("malformed", $"observations[{i.ToString(CultureInfo.InvariantCulture)}].{error}");
            }
        }
        return null;

        static BatchRefusal Invalid(string reason, string message) => new(reason, new Status(StatusCode.InvalidArgument, message));
    }

    private static string? FieldError(Observation o) =>
        !Valid(o.At) ? "at: required, a valid timestamp"
        : Over("caller", o.Caller, ObservationLimits.MaxIdentity) ?? Over("subject", o.Subject, ObservationLimits.MaxIdentity)
        ?? (o.Method.Length == 0 ? "method: required" : Over("method", o.Method, ObservationLimits.MaxMethod))
        ?? (o.Path.Length == 0 || o.Path[0] != '/' ? "path: must start with '/'" : Over("path", o.Path, ObservationLimits.MaxPath))
        ?? Over("template", o.Template, ObservationLimits.MaxPath)
        ?? Over("policy", o.Policy, ObservationLimits.MaxName) ?? Over("rule", o.Rule, ObservationLimits.MaxName)
        ?? (o.Caller.Length == 0 ? "caller: required" : null)
        ?? (o.Port > 65535 ? $"port: {o.Port.ToString(CultureInfo.InvariantCulture)} is not a port" : null)
        ?? (o.Status is < 100 or > 999 ? $"status: {o.Status.ToString(CultureInfo.InvariantCulture)} is not an HTTP status" : null)
        ?? (o.AuditUnmatched.Count > 64 ? "audit_unmatched: more than 64 entries" : null)
        ?? o.AuditUnmatched.Select(a => Over("audit_unmatched", a, ObservationLimits.MaxName)).FirstOrDefault(e => e is not null);

    /// <summary>Set, and within what a timestamp can say (year 1 to 9999, nanos below a second).</summary>
    private static bool Valid(Timestamp? t) =>
        t is not null && t.Seconds is >= -62_135_596_800 and <= 253_402_300_799 && t.Nanos is >= 0 and < 1_000_000_000;

    private static string? Over(string field, string value, int limit) =>
        value.Length > limit ? $"{field}: {value.Length.ToString(CultureInfo.InvariantCulture)} characters, over the limit of {limit.ToString(CultureInfo.InvariantCulture)}" : null;

    private static string Shorten(string value) => value.Length <= 256 ? value : value[..256] + "…";

    /// <summary>
    /// Moves each observation's time by the reporter's skew (our receive time minus its <c>sent_at</c>: transit is
    /// counted as skew, which is at most the stream's latency) and clamps it into the last
    /// <see cref="ObservationLimits.MaxAge"/>; returns how many were clamped.
    /// </summary>
    internal static int CorrectTimes(ObservationBatch batch, DateTimeOffset received)
    {
        var skew = received - batch.SentAt.ToDateTimeOffset();
        var earliest = received - ObservationLimits.MaxAge;
        var clamped = 0;
        foreach (var observation in batch.Observations)
        {
            var at = Add(observation.At.ToDateTimeOffset(), skew);
            if (at > received || at < earliest)
            {
                at = at > received ? received : earliest;
                clamped++;
            }
            observation.At = Timestamp.FromDateTimeOffset(at);
        }
        return clamped;

        static DateTimeOffset Add(DateTimeOffset at, TimeSpan skew) =>
            skew > TimeSpan.Zero ? (DateTimeOffset.MaxValue - at < skew ? DateTimeOffset.MaxValue : at + skew)
            : (at - DateTimeOffset.MinValue < -skew ? DateTimeOffset.MinValue : at + skew);
    }
}

internal static partial class ObservationLog
{
    [LoggerMessage(EventId = 1900, Level = LogLevel.Warning, Message = "observation batch from {Reporter} refused ({Code}): {Reason}")]
    public static partial void BatchRefused(ILogger logger, string reporter, StatusCode code, string reason);

    [LoggerMessage(EventId = 1902, Level = LogLevel.Information, Message = "observation stream from {Reporter} open")]
    public static partial void StreamOpened(ILogger logger, string reporter);

    [LoggerMessage(EventId = 1901, Level = LogLevel.Error, Message = "observation consumer {Consumer} failed: {Reason}")]
    public static partial void ConsumerFailed(ILogger logger, string consumer, string reason);
}

internal static class ObservationServices
{
    /// <summary>The observation stream and its metrics; consumers register themselves as <see cref="IObservationConsumer"/>.</summary>
    public static IServiceCollection AddObservations(this IServiceCollection services)
    {
        services.AddSingleton<ObservationMetrics>();
        return services;
    }
}
