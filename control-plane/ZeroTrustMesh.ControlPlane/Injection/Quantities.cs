using System.Globalization;
using System.Text.RegularExpressions;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>Kubernetes resource quantities ("100m", "0.5", "128Mi", "1e3"), as the API server reads them, non-negative.</summary>
internal static partial class Quantities
{
    [GeneratedRegex(@"^(?<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]{1,2})?$", RegexOptions.CultureInvariant)]
    private static partial Regex Grammar();

    public static bool IsValid(string? text) => TryParse(text, out _);

    /// <summary>The quantity's value (cores, bytes), for comparing a request with a limit.</summary>
    public static bool TryParse(string? text, out decimal value)
    {
        value = 0;
        if (text is null || text.Length > 64 || Grammar().Match(text) is not { Success: true } match)
        {
            return false;
        }
        if (!decimal.TryParse(match.Groups["number"].Value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
        {
            return false;
        }
        var suffix = match.Groups["suffix"].Value;
        decimal multiplier = suffix switch
        {
            "" => 1m,
            "Ki" => 1024m,
            "Mi" => 1024m * 1024,
            "Gi" => 1024m * 1024 * 1024,
            "Ti" => 1024m * 1024 * 1024 * 1024,
            "Pi" => 1024m * 1024 * 1024 * 1024 * 1024,
            "Ei" => 1024m * 1024 * 1024 * 1024 * 1024 * 1024,
            "n" => 0.000000001m,
            "u" => 0.000001m,
            "m" => 0.001m,
            "k" => 1e3m,
            "M" => 1e6m,
            "G" => 1e9m,
            "T" => 1e12m,
            "P" => 1e15m,
            "E" => 1e18m,
            _ => Power10(int.Parse(suffix.AsSpan(1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture)),
        };
        try
        {
            value = number * multiplier;
            return true;
        }
        catch (OverflowException)
        {
            return false;
        }
    }

    private static decimal Power10(int exponent)
    {
        var result = 1m;
        for (var i = 0; i < Math.Abs(exponent) && i < 27; i++)
        {
            result = exponent > 0 ? result * 10 : result / 10;
        }
        return result;
    }
}
