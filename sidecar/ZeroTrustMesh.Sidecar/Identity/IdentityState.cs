using Grpc.Core;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;

namespace ZeroTrustMesh.Sidecar.Identity;

/// <summary>
/// The one place the current identity lives. Readers take <see cref="Current"/> once per connection or
/// request; the rotator swaps it atomically. Fail closed: with no certificate, or an expired one, the
/// sidecar is not ready. Readiness is derived from the clock, so expiry needs no timer to take effect.
/// What peers are trusted with lives here too: the trust bundle (with the identity) and the revocation list
/// (from the config stream), both read at every handshake. So does the control plane's word that the current
/// certificate is revoked: a revoked sidecar is not ready, whatever the clock says.
/// </summary>
internal sealed class IdentityState(TimeProvider time)
{
    private volatile WorkloadIdentity? _current;
    private volatile RevocationList _revocations = RevocationList.Empty;
    private volatile RevokedCertificate? _revoked;

    public WorkloadIdentity? Current => _current;

    /// <summary>The current identity if it is valid now; otherwise null (fail closed).</summary>
    public WorkloadIdentity? Valid => _current is { } current && current.IsValidAt(time.GetUtcNow()) ? current : null;

    public bool IsReady => Valid is not null && RevokedReason is null;

    /// <summary>Why the control plane refuses the current certificate as revoked; null while it does not (or for an older certificate).</summary>
    public string? RevokedReason =>
        _revoked is { } revoked && _current is { } current && RevocationList.NormalizedSerial(current.Certificate) == revoked.Serial ? revoked.Reason : null;

    /// <summary>Notes a control-plane refusal: one that says the certificate is revoked makes this sidecar not ready.</summary>
    public void NoteRefusal(RpcException refusal)
    {
        if (RevokedCaller.IsRevoked(refusal, out var serial))
        {
            _revoked = new RevokedCertificate(serial, refusal.Status.Detail);
        }
    }

    /// <summary>Peer certificates refused at the handshake; the control plane's list, replaced as a whole.</summary>
    public RevocationList Revocations
    {
        get => _revocations;
        set => _revocations = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>Raised after every swap; handlers must be quick (they run on the rotator's path).</summary>
    public event Action<WorkloadIdentity>? Changed;

    public void Set(WorkloadIdentity identity)
    {
        _current = identity;
        Changed?.Invoke(identity);
    }

    private sealed record RevokedCertificate(string Serial, string Reason);
}
