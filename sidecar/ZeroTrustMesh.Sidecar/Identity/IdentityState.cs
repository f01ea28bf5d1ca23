using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar.Identity;

/// <summary>
/// The one place the current identity lives. Readers take <see cref="Current"/> once per connection or
/// request; the rotator swaps it atomically. Fail closed: with no certificate, or an expired one, the
/// sidecar is not ready. Readiness is derived from the clock, so expiry needs no timer to take effect.
/// What peers are trusted with lives here too: the trust bundle (with the identity) and the revocation list
/// (from the config stream), both read at every handshake.
/// </summary>
internal sealed class IdentityState(TimeProvider time)
{
    private volatile WorkloadIdentity? _current;
    private volatile RevocationList _revocations = RevocationList.Empty;

    public WorkloadIdentity? Current => _current;

    /// <summary>The current identity if it is valid now; otherwise null (fail closed).</summary>
    public WorkloadIdentity? Valid => _current is { } current && current.IsValidAt(time.GetUtcNow()) ? current : null;

    public bool IsReady => Valid is not null;

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
}
