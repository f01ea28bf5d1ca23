using Grpc.Core;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;

namespace ZeroTrustMesh.Sidecar.Identity;

/// <summary>
/// The one place the current identity lives. Readers take <see cref="Current"/> once per connection or
/// request; the rotator swaps it atomically. Fail closed: with no certificate, or an expired one, the
/// sidecar is not ready. Readiness is derived from the clock, so expiry needs no timer to take effect.
/// What peers are trusted with lives here too, each read at every handshake (inbound, outbound, control plane):
/// the trust bundle (the newest the control plane sent, in an issuance response or a config snapshot) and the
/// revocation list (from the config stream). So does the control plane's word that the current certificate is
/// revoked: a revoked sidecar is not ready, whatever the clock says.
/// </summary>
/// <param name="bootstrap">The bundle the operator gave to reach the control plane; followed until the control plane sends its own.</param>
internal sealed class IdentityState(TimeProvider time, TrustBundle? bootstrap = null, ILogger<IdentityState>? logger = null)
{
    private volatile WorkloadIdentity? _current;
    private volatile RevocationList _revocations = RevocationList.Empty;
    private volatile RevokedCertificate? _revoked;
    private volatile TrustBundle? _bundle = bootstrap;
    private readonly Lock _bundleGate = new();

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

    /// <summary>
    /// The roots peers' and the control plane's certificates must chain to: the newest bundle by sequence, never an
    /// empty one. Null only before the first (no bootstrap bundle given: tests).
    /// </summary>
    public TrustBundle? Bundle => _bundle;

    /// <summary>Raised after every swap; handlers must be quick (they run on the rotator's path).</summary>
    public event Action<WorkloadIdentity>? Changed;

    public void Set(WorkloadIdentity identity)
    {
        _current = identity;
        Changed?.Invoke(identity);
    }

    private sealed record RevokedCertificate(string Serial, string Reason);

    /// <summary>
    /// Follows <paramref name="bundle"/> if it is newer (a higher sequence) than the one held: the next handshake
    /// verifies against it, established connections are left alone. An older or equal one is ignored (a replica that
    /// is behind, the same bundle sent again).
    /// </summary>
    /// <returns>Whether it is now the bundle followed.</returns>
    /// <exception cref="FormatException">The bundle is of another trust domain than this sidecar's.</exception>
    public bool ApplyBundle(TrustBundle bundle, string source)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        lock (_bundleGate)
        {
            var held = _bundle;
            if (held is not null && bundle.TrustDomain != held.TrustDomain)
            {
                throw new FormatException($"trust bundle {bundle.Sequence} is for trust domain '{bundle.TrustDomain}'; this sidecar is in '{held.TrustDomain}'");
            }
            if (held is not null && bundle.Sequence <= held.Sequence)
            {
                return false;
            }
            _bundle = bundle;
        }
        if (logger is not null)
        {
            SidecarLog.TrustBundleApplied(logger, bundle.Sequence, bundle.Roots.Count, source, string.Join(",", bundle.Roots.Select(r => r.Thumbprint)));
        }
        return true;
    }

    /// <summary>The trust bundle of a config snapshot (one call from the policy watcher); absent is nothing to apply.</summary>
    /// <exception cref="FormatException">The bundle cannot be used: NACK the snapshot.</exception>
    public bool ApplyBundle(Proto.V1.TrustBundle? bundle, string version) =>
        bundle is not null && ApplyBundle(TrustBundleMapping.FromProto(bundle), $"config {version}");
}
