using System.Globalization;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar.Outbound;

/// <summary>
/// How the outbound path treats one destination service: connect timeout, request idle timeout, how many times a
/// bodiless idempotent request is retried on another endpoint after a connect failure, and how long the circuit
/// breaker ejects an endpoint. Set per service with <c>--destination SERVICE:key=value,…</c>; defaults otherwise.
/// </summary>
internal sealed record ResilienceSettings(TimeSpan ConnectTimeout, TimeSpan RequestTimeout, int Retries, TimeSpan EjectionTime)
{
    public static readonly ResilienceSettings Default = new(TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(100), 2, TimeSpan.FromSeconds(15));

    public const string Keys = "connect-timeout, request-timeout, retries, ejection-time";

    /// <summary>Parses <c>orders.shop:retries=0,connect-timeout=500ms</c>; keys not given keep <paramref name="defaults"/>.</summary>
    public static bool TryParse(string text, ResilienceSettings defaults, out string service, out ResilienceSettings settings, out string error)
    {
        service = "";
        settings = defaults;
        error = "";
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
        {
            error = $"--destination '{text}' must be SERVICE:key=value,… (keys: {Keys})";
            return false;
        }
        service = text[..colon];
        var parsed = defaults;
        foreach (var pair in text[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = pair.Split('=', 2);
            var value = parts.Length == 2 ? parts[1] : "";
            TimeSpan duration = default;
            var ok = parts[0] switch
            {
                "connect-timeout" when ParseDuration(value, out duration) => Set(parsed with { ConnectTimeout = duration }),
                "request-timeout" when ParseDuration(value, out duration) => Set(parsed with { RequestTimeout = duration }),
                "ejection-time" when ParseDuration(value, out duration) => Set(parsed with { EjectionTime = duration }),
                "retries" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var retries) && retries <= 10 => Set(parsed with { Retries = retries }),
                _ => false,
            };
            if (!ok)
            {
                error = $"--destination {service}: '{pair}' is not one of {Keys} with a valid value (durations like 500ms, 2s; retries 0..10)";
                return false;
            }
        }
        settings = parsed;
        return true;

        bool Set(ResilienceSettings updated)
        {
            parsed = updated;
            return true;
        }
    }

    private static bool ParseDuration(string text, out TimeSpan duration)
    {
        if (text.EndsWith("ms", StringComparison.Ordinal) && int.TryParse(text.AsSpan(0, text.Length - 2), NumberStyles.None, CultureInfo.InvariantCulture, out var ms) && ms > 0)
        {
            duration = TimeSpan.FromMilliseconds(ms);
            return true;
        }
        return Durations.TryParse(text, out duration);
    }
}
