using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Identity.Tests;

public sealed class DurationsTests
{
    [Theory]
    [InlineData("90s", 90)]
    [InlineData("10m", 600)]
    [InlineData("1h", 3600)]
    [InlineData("1.5h", 5400)]
    [InlineData("7d", 604800)]
    public void Operator_durations_parse(string text, double seconds)
    {
        Assert.True(Durations.TryParse(text, out var d));
        Assert.Equal(seconds, d.TotalSeconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("10")]
    [InlineData("m")]
    [InlineData("-5m")]
    [InlineData("0s")]
    [InlineData("5x")]
    [InlineData("1e308d")]
    public void Nonsense_is_refused(string text) => Assert.False(Durations.TryParse(text, out _));

    [Fact]
    public void Format_round_trips() =>
        Assert.Equal(["1d", "2h", "10m", "90s"], new[] { 86400, 7200, 600, 90 }.Select(s => Durations.Format(TimeSpan.FromSeconds(s))));
}
