using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// The mesh's current trust bundle, for what publishes it outside the control plane (the webhook configuration's
/// <c>caBundle</c>, the <c>ztm-ca-root</c> ConfigMaps). It follows the CA's bundle, which a CA rotation changes.
/// </summary>
internal sealed class TrustBundleFeed
{
    private readonly Lock _gate = new();
    private TrustBundle _current;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TrustBundleFeed(CertificateAuthority ca)
    {
        _current = ca.Bundle;
        ca.Changed += () => Publish(ca.Bundle);
    }

    public TrustBundle Current
    {
        get
        {
            lock (_gate)
            {
                return _current;
            }
        }
    }

    /// <summary>Makes <paramref name="next"/> current and wakes every waiter, when its roots differ.</summary>
    public void Publish(TrustBundle next)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            if (next.SameRootsAs(_current))
            {
                return;
            }
            _current = next;
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.SetResult();
    }

    /// <summary>Completes once the current bundle is no longer <paramref name="seen"/> (at once if it already is not).</summary>
    public Task WaitForChangeAsync(TrustBundle seen, CancellationToken cancellation)
    {
        lock (_gate)
        {
            return ReferenceEquals(_current, seen) ? _changed.Task.WaitAsync(cancellation) : Task.CompletedTask;
        }
    }
}
