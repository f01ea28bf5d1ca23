using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Identity.Tests;

public sealed class RotationScheduleTests
{
    private static readonly DateTimeOffset NotBefore = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset NotAfter = NotBefore.AddHours(1);

    [Theory]
    [InlineData(0.0, 27 * 60)]
    [InlineData(0.5, 30 * 60)]
    [InlineData(0.999999, 33 * 60)]
    public void Renewal_falls_at_half_life_spread_by_jitter(double jitter, int expectedSeconds)
    {
        var at = RotationSchedule.RenewAt(NotBefore, NotAfter, jitter);
        Assert.Equal(expectedSeconds, (at - NotBefore).TotalSeconds, precision: 0);
    }

    [Fact]
    public void Backoff_grows_exponentially_up_to_the_ceiling()
    {
        var far = NotBefore.AddDays(1);
        var ceilings = Enumerable.Range(1, 8).Select(a => RotationSchedule.RetryDelay(a, NotBefore, far, 0.999999)).ToList();
        Assert.Equal([1, 2, 4, 8, 16, 30, 30, 30], ceilings.Select(d => Math.Round(d.TotalSeconds)));
        Assert.All(Enumerable.Range(1, 8), a => Assert.True(RotationSchedule.RetryDelay(a, NotBefore, far, 0) >= TimeSpan.FromSeconds(0.5)));
    }

    [Fact]
    public void Backoff_never_waits_past_half_the_remaining_validity()
    {
        var now = NotAfter.AddSeconds(-10);
        var delay = RotationSchedule.RetryDelay(10, now, NotAfter, 0.999999);
        Assert.Equal(5, delay.TotalSeconds, precision: 3);
    }

    [Fact]
    public void Jitter_outside_zero_to_one_is_a_bug()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => RotationSchedule.RenewAt(NotBefore, NotAfter, 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => RotationSchedule.RetryDelay(0, NotBefore, NotAfter, 0.5));
    }
}
