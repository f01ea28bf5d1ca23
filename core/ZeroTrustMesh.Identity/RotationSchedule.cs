namespace ZeroTrustMesh.Identity;

/// <summary>
/// When to renew a certificate, as pure functions of its validity and the current time
/// (SPIRE's rotationutil does the same): renew at half its lifetime, spread by jitter so a fleet
/// issued at once does not renew at once; on failure, back off exponentially with full jitter,
/// never waiting past the point where the certificate would expire.
/// </summary>
public static class RotationSchedule
{
    /// <summary>Fraction of the lifetime spread around the half-life: renewal falls in [0.45, 0.55].</summary>
    public const double JitterSpread = 0.10;

    public static readonly TimeSpan MinBackoff = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    /// <param name="jitter">A uniform random number in [0, 1).</param>
    public static DateTimeOffset RenewAt(DateTimeOffset notBefore, DateTimeOffset notAfter, double jitter)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(jitter, 0.0);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(jitter, 1.0);
        var lifetime = notAfter - notBefore;
        var fraction = 0.5 - (JitterSpread / 2) + (JitterSpread * jitter);
        return notBefore + (lifetime * fraction);
    }

    /// <summary>Delay before retry number <paramref name="attempt"/> (1-based) after a failed renewal.</summary>
    /// <param name="jitter">A uniform random number in [0, 1).</param>
    public static TimeSpan RetryDelay(int attempt, DateTimeOffset now, DateTimeOffset notAfter, double jitter)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attempt, 1);
        var ceiling = MinBackoff * Math.Pow(2, Math.Min(attempt - 1, 16));
        if (ceiling > MaxBackoff)
        {
            ceiling = MaxBackoff;
        }
        // Full jitter, but at least MinBackoff/2 so a down control plane is not hammered.
        var delay = (MinBackoff / 2) + ((ceiling - (MinBackoff / 2)) * jitter);
        // Keep trying while the certificate is still valid; after expiry keep the ceiling.
        var remaining = notAfter - now;
        if (remaining > TimeSpan.Zero && delay > remaining / 2)
        {
            delay = remaining / 2 > MinBackoff / 2 ? remaining / 2 : MinBackoff / 2;
        }
        return delay;
    }
}
