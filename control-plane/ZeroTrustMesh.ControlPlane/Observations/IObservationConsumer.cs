using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Observations;

/// <summary>Who reported a batch: the verified SVID of the stream, and the service it serves (issue 19, section 1).</summary>
public sealed record ObservationReporter(SpiffeId Identity, string Service);

/// <summary>
/// One use of what sidecars observe (API inventory, anomaly response, least-privilege suggestions): every accepted
/// batch is handed to every registered consumer, after the observations' times were corrected for the reporter's
/// clock skew. Called on the receiving stream's thread: a consumer must be quick and must not throw; anything slow it
/// does later, from its own state.
/// </summary>
public interface IObservationConsumer
{
    void Consume(ObservationReporter reporter, IReadOnlyList<Observation> observations);
}
