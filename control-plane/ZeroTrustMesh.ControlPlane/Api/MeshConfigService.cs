using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>
/// The per-sidecar config stream:
/// 1. the caller is a workload with an SVID; it gets the resources of its own workload only;
/// 2. a snapshot goes out at once, then again whenever what concerns the workload changes (versioned, with a nonce);
/// 3. every answer is an ACK (the version now enforced) or a NACK (the error; the sidecar keeps its last good version).
/// </summary>
internal sealed class MeshConfigService(WorkloadCaller caller, ConfigDistributor distributor, CertificateAuthority ca, TimeProvider time, ILogger<MeshConfigService> logger) : MeshConfig.MeshConfigBase
{
    public override async Task Stream(IAsyncStreamReader<ConfigRequest> requestStream, IServerStreamWriter<ConfigSnapshot> responseStream, ServerCallContext context)
    {
        var id = caller.Require(context);
        id.TryGetWorkload(out var ns, out var sa);
        var session = distributor.Open(id, new WorkloadRef(ns!, sa!));
        session.CertificateExpiresAt = PeerCertificate.Of(context)!.NotAfter.ToUniversalTime();
        session.LastSeen = time.GetUtcNow();
        ControlPlaneLog.ConfigStreamOpened(logger, id.Value);

        var answers = ReadAnswersAsync(requestStream, session, context.CancellationToken);
        try
        {
            await foreach (var state in session.Changes.ReadAllAsync(context.CancellationToken))
            {
                var config = distributor.ConfigFor(state, session.Workload);
                if (config.Content == session.LastContent && session.VersionSent.Length > 0)
                {
                    continue; // nothing that concerns this workload changed
                }
                // The resources and bundle messages are shared by every stream (read-only); only version and nonce are per snapshot.
                var snapshot = new ConfigSnapshot { Version = state.Version, Nonce = Guid.NewGuid().ToString("N"), TrustBundle = distributor.TrustBundleProto(ca.Bundle) };
                snapshot.Resources.AddRange(config.Resources);
                session.LastNonce = snapshot.Nonce;
                session.LastContent = config.Content;
                session.VersionSent = state.Version;
                await responseStream.WriteAsync(snapshot, context.CancellationToken);
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // the sidecar went away or the server is stopping
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
                if (request.ResponseNonce.Length > 0 && request.ResponseNonce == session.LastNonce)
                {
                    session.NackError = request.Error;
                    if (request.Error.Length > 0)
                    {
                        ControlPlaneLog.ConfigNacked(logger, session.Id.Value, session.VersionSent, request.Error);
                    }
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or RpcException)
        {
            // stream ended
        }
    }
}
