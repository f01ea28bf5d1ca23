using System.Globalization;

namespace ZeroTrustMesh.Identity;

/// <summary>Durations as operators write them on a command line: <c>90s</c>, <c>10m</c>, <c>1h</c>, <c>7d</c>.</summary>
public static class Durations
{
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = default;
        if (string.IsNullOrWhiteSpace(text) || text.Length < 2)
        {
            return false;
        }
        var unit = text[^1];
        if (!double.TryParse(text.AsSpan(0, text.Length - 1), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) || value <= 0)
        {
            return false;
        }
        double? seconds = unit switch
        {
            's' => value,
            'm' => value * 60,
            'h' => value * 3600,
            'd' => value * 86400,
            _ => null,
        };
        if (seconds is not { } s || s > TimeSpan.MaxValue.TotalSeconds / 2)
        {
            return false;
        }
        duration = TimeSpan.FromSeconds(s);
        return true;
    }

    public static string Format(TimeSpan duration) => duration switch
    {
        { TotalSeconds: var s } when s % 86400 == 0 => $"{s / 86400}d",
        { TotalSeconds: var s } when s % 3600 == 0 => $"{s / 3600}h",
        { TotalSeconds: var s } when s % 60 == 0 => $"{s / 60}m",
        _ => $"{duration.TotalSeconds:0.###}s",
    };
}
