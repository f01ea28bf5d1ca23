using Google.Protobuf;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>
/// The wire contract of <c>ztm.v1.MeshConfig/Stream</c> (<c>policy.proto</c>), bound by hand rather than through the
/// generated base class so that the server writes each <see cref="ConfigSnapshot"/> from bytes serialized once per
/// version and group of workloads (<see cref="PreparedSnapshot"/>), not once per stream. Clients use the generated
/// <c>MeshConfigClient</c> unchanged: the bytes are a <see cref="ConfigSnapshot"/>.
/// </summary>
[BindServiceMethod(typeof(MeshConfigStreamBase), nameof(BindService))]
internal abstract class MeshConfigStreamBase
{
    private static readonly Method<ConfigRequest, PreparedSnapshot> StreamMethod = new(
        MethodType.DuplexStreaming,
        MeshConfig.Descriptor.FullName,
        "Stream",
        new Marshaller<ConfigRequest>(
            static (request, context) => context.Complete(request.ToByteArray()),
            static context => ConfigRequest.Parser.ParseFrom(context.PayloadAsReadOnlySequence())),
        new Marshaller<PreparedSnapshot>(
            static (snapshot, context) => context.Complete(snapshot.Bytes),
            static _ => throw new NotSupportedException("the control plane only sends snapshots")));

    public abstract Task Stream(IAsyncStreamReader<ConfigRequest> requestStream, IServerStreamWriter<PreparedSnapshot> responseStream, ServerCallContext context);

    public static void BindService(ServiceBinderBase binder, MeshConfigStreamBase? service) =>
        binder.AddMethod(StreamMethod, service is null ? null : service.Stream);
}

/// <summary>
/// The per-sidecar config stream:
/// 1. the caller is a workload with an unrevoked SVID; it gets the resources of its own workload only, and every revocation;
/// 2. a snapshot goes out at once, then again whenever what concerns the workload changes (versioned, with a nonce);
/// 3. every answer is an ACK (the version now enforced) or a NACK (the error; the sidecar keeps its last good version),
///    and says which trust bundle the sidecar follows (CA rotation waits on it);
/// 4. a revocation that covers the sidecar's certificate ends the stream with PERMISSION_DENIED naming it.
/// </summary>
internal sealed class MeshConfigService(WorkloadCaller caller, ConfigDistributor distributor, ControlPlaneMetrics metrics, TimeProvider time, ILogger<MeshConfigService> logger) : MeshConfigStreamBase
{
    public override async Task Stream(IAsyncStreamReader<ConfigRequest> requestStream, IServerStreamWriter<PreparedSnapshot> responseStream, ServerCallContext context)
    {
        var (id, certificate, _, _) = caller.Require(context);
        id.TryGetWorkload(out var ns, out var sa);
        var session = distributor.Open(id, new WorkloadRef(ns!, sa!),
            SessionCertificate.Of(certificate!));
        session.LastSeen = time.GetUtcNow();
        ControlPlaneLog.ConfigStreamOpened(logger, id.Value);

        var answers = ReadAnswersAsync(requestStream, session, context.CancellationToken);
        try
        {
            await foreach (var state in session.Changes.ReadAllAsync(context.CancellationToken))
            {
                var snapshot = distributor.SnapshotFor(state, session.Workload);
                if (snapshot.SameContentAs(session.LastSent))
                {
                    continue; // nothing that concerns this workload changed
                }
                session.LastNonce = snapshot.Nonce;
                session.LastSent = snapshot;
                session.VersionSent = snapshot.Version;
                session.Pushing(snapshot.Nonce, time.GetTimestamp()); // before the write: the answer can come before it returns
                metrics.ConfigPushed();
                await responseStream.WriteAsync(snapshot, context.CancellationToken);
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // the sidecar went away or the server is stopping
        }
        catch (RpcException e)
        {
            // Ended by the control plane (a revocation): the sidecar gets this status, and stops answering.
            ControlPlaneLog.ConfigStreamEnded(logger, id.Value, e.StatusCode, e.Status.Detail);
            throw;
        }
        finally
        {
            distributor.Close(session);
            ControlPlaneLog.ConfigStreamClosed(logger, id.Value, session.VersionApplied);
        }
        await answers;
    }

    private async Task ReadAnswersAsync(IAsyncStreamReader<ConfigRequest> requests, SidecarSession session, CancellationToken cancellation)
    {
        try
        {
            while (await requests.MoveNext(cancellation))
            {
                var request = requests.Current;
                session.LastSeen = time.GetUtcNow();
                session.VersionApplied = request.VersionApplied;
                session.Follows(request.TrustBundleSequence);
                if (request.ResponseNonce.Length > 0 && request.ResponseNonce == session.LastNonce)
                {
                    if (request.Error.Length == 0 && session.LastSent is { } acked && acked.Nonce == request.ResponseNonce)
                    {
                        session.Follows(acked.BundleSequence); // a sidecar that does not say which bundle it follows
                    }
                    session.NackError = request.Error;
                    if (request.Error.Length > 0)
                    {
                        ControlPlaneLog.ConfigNacked(logger, session.Id.Value, session.VersionSent, request.Error);
                    }
                    if (session.Answered(request.ResponseNonce) is { } pushedAt)
                    {
                        metrics.ConfigAnswered(rejected: request.Error.Length > 0, time.GetElapsedTime(pushedAt));
                    }
                }
            }
        }
        catch (Exception)
        {
            // The stream ended, whichever way: a reader left behind by a stream the server ended may fail any way it likes.
        }
    }
}
