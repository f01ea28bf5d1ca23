using Microsoft.Extensions.Time.Testing;

namespace ZeroTrustMesh.Hosting.Tests;

public sealed class LogRateLimiterTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    [Fact]
    public void At_most_n_lines_per_window_per_kind_and_the_next_line_reports_the_rest()
    {
        var limiter = new LogRateLimiter(_time, perWindow: 2, TimeSpan.FromMinutes(1));

        Assert.True(limiter.TryAcquire("a", out var suppressed, out var total));
        Assert.Equal((0, 1), (suppressed, total));
        Assert.True(limiter.TryAcquire("a", out _, out _));
        Assert.False(limiter.TryAcquire("a", out _, out _));
        Assert.False(limiter.TryAcquire("a", out _, out _));
        Assert.True(limiter.TryAcquire("b", out _, out _)); // another kind has its own budget

        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.True(limiter.TryAcquire("a", out suppressed, out total));
        Assert.Equal((2, 5), (suppressed, total));
        Assert.True(limiter.TryAcquire("a", out suppressed, out _));
        Assert.Equal(0, suppressed);
    }
}
