using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.Observations;

/// <summary>
/// Sends what <see cref="ObservationBuffer"/> collected to the control plane on <c>ztm.v1.Observations/Report</c>
/// (issue 19, section 1), off the request path:
/// 1. once the sidecar has its certificate, open the stream (mTLS with the SVID, like the config stream);
/// 2. every second, or as soon as <see cref="BatchSize"/> observations wait, send one batch (sequence from 1 per stream,
///    this sidecar's SPIFFE ID as the reporter, its clock as <c>sent_at</c>, and how many were dropped since the last);
/// 3. when the stream breaks, the batch in flight is counted as dropped, and the stream is reopened with backoff and
///    jitter; meanwhile the buffer fills and then drops (counted).
/// </summary>
internal sealed class ObservationReporter(
    SidecarOptions options,
    IdentityState state,
    CertificateRotator rotator,
    ObservationBuffer buffer,
    TimeProvider time,
    ILogger<ObservationReporter> logger) : BackgroundService
{
    /// <summary>Observations per batch, at most.</summary>
    public const int BatchSize = 500;

    /// <summary>How long an observation waits for its batch, at most.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        if (!buffer.Enabled)
        {
            return;
        }
        try
        {
            await rotator.FirstIdentity.WaitAsync(stopping);
        }
        catch (Exception) when (!stopping.IsCancellationRequested)
        {
            return;
        }
        using var channel = ControlPlaneChannel.Create(options.ControlPlane, () => state.Bundle ?? options.BootstrapBundle, () => state.Valid?.Certificate, time);
        var client = new Proto.V1.Observations.ObservationsClient(channel);
        var taken = new List<RequestObservation>(BatchSize);
        for (var attempt = 1; !stopping.IsCancellationRequested; attempt++)
        {
            try
            {
                using var call = client.Report(cancellationToken: stopping);
                var acks = ReadAcksAsync(call.ResponseStream, stopping);
                SidecarLog.ObservationStreamOpened(logger, buffer.Capacity);
                for (ulong sequence = 1; ; sequence++)
                {
                    await buffer.WaitForBatchAsync(Interval, time, stopping);
                    if (acks.IsCompleted)
                    {
                        await acks; // the control plane ended the stream: its status says why
                        throw new RpcException(new Status(StatusCode.Unavailable, "the control plane closed the observation stream"));
                    }
                    taken.Clear();
                    if (buffer.Drain(taken, BatchSize) == 0 && buffer.Dropped == 0)
                    {
                        sequence--; // nothing to say this second
                        continue;
                    }
                    var batch = new ObservationBatch
                    {
                        Sequence = sequence,
                        Reporter = state.Current!.Id.Value,
                        Dropped = (ulong)buffer.TakeDropped(),
                    };
                    foreach (var observation in taken)
                    {
                        batch.Observations.Add(ToProto(observation));
                    }
                    batch.SentAt = Timestamp.FromDateTimeOffset(time.GetUtcNow());
                    try
                    {
                        await call.RequestStream.WriteAsync(batch, stopping);
                    }
                    catch (Exception) when (!stopping.IsCancellationRequested)
                    {
                        buffer.Lost(taken.Count + (long)batch.Dropped);
                        throw;
                    }
                    attempt = 1;
                }
            }
            catch (Exception e) when (e is RpcException or IOException or InvalidOperationException && !stopping.IsCancellationRequested)
            {
                var delay = RotationSchedule.RetryDelay(attempt, time.GetUtcNow(), DateTimeOffset.MaxValue, Random.Shared.NextDouble());
                SidecarLog.ObservationStreamFailed(logger, e is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message, delay.TotalSeconds);
                try
                {
                    await Task.Delay(delay, time, stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (Exception) when (stopping.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>Reads the acks (nothing to do with them but notice that the stream ended, and how).</summary>
    private static async Task ReadAcksAsync(IAsyncStreamReader<ObservationAck> acks, CancellationToken cancellation)
    {
        while (await acks.MoveNext(cancellation))
        {
        }
    }

    internal static Observation ToProto(in RequestObservation o)
    {
        var proto = ToProtoWithoutAudit(o);
        var policies = o.Audit.Policies;
        for (var i = 0; i < policies.Length; i++)
        {
            (o.Audit.Matched(i) ? proto.AuditMatched : proto.AuditUnmatched).Add(policies[i]);
        }
        return proto;
    }

    private static Observation ToProtoWithoutAudit(in RequestObservation o) => new()
    {
        At = Timestamp.FromDateTimeOffset(o.At),
        Caller = o.Caller,
        Subject = o.Subject ?? "",
        Method = o.Method,
        Path = o.Path,
        Template = o.Template ?? "",
        Port = (uint)o.Port,
        Status = (uint)o.Status,
        Decision = o.Allowed ? Decision.Allowed : Decision.Denied,
        Policy = o.Policy ?? "",
        Rule = o.Policy is null || o.Rule < 0 ? "" : o.Rule.ToString(System.Globalization.CultureInfo.InvariantCulture),
        Schema = o.Schema,
        RequestBytes = (ulong)Math.Max(0, o.RequestBytes),
        ResponseBytes = (ulong)Math.Max(0, o.ResponseBytes),
        DurationMicros = (uint)Math.Clamp(o.Duration.Ticks / TimeSpan.TicksPerMicrosecond, 0, uint.MaxValue),
    };
}
