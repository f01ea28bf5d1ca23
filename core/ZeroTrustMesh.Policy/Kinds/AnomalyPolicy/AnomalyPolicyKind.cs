using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary><c>kind: AnomalyPolicy</c>: reader, validator and wire form. The control plane's anomaly detector applies it.</summary>
public sealed class AnomalyPolicyKind : PolicyKind<AnomalyPolicy>
{
    public static readonly AnomalyPolicyKind Instance = new();

    /// <summary>Limits that keep a policy meaningful: a half-life or cool-off beyond a week, or a multiple beyond this, is a typo.</summary>
    public static readonly TimeSpan MaxDuration = TimeSpan.FromDays(7);
    public const double MaxMultiple = 1_000_000;

    private AnomalyPolicyKind()
    {
    }

    public override string Name => AnomalyPolicy.KindName;

    /// <summary>Enforced by the control plane: sidecars get the restrictions it decides, not the policy.</summary>
    public override bool SentToSidecars => false;

    private static readonly string[] Fields =
    [
        "selector", "mode", "halfLife", "multiple", "minimumRate", "maxErrorRatio", "minimumHistory", "throttleRate",
        "quarantineAfter", "coolOff", "revokeOnQuarantine",
    ];

    protected override AnomalyPolicy ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader)
    {
        if (spec is null)
        {
            return new AnomalyPolicy(metadata, AnomalyPolicySpec.Defaults(null));
        }
        reader.Keys(spec, "spec", Fields);
        var mode = reader.Text(spec, "mode", "spec") switch
        {
            null or "DryRun" => AnomalyMode.DryRun,
            "Enforce" => AnomalyMode.Enforce,
            var other => Invalid(AnomalyMode.DryRun, "spec.mode", $"'{other}' is not a mode: use DryRun or Enforce"),
        };
        return new AnomalyPolicy(metadata, new AnomalyPolicySpec(
            reader.Selector(spec),
            mode,
            Duration("halfLife", AnomalyPolicySpec.DefaultHalfLife),
            Real("multiple", AnomalyPolicySpec.DefaultMultiple),
            reader.Number(SpecReader.Child(spec, "minimumRate"), "spec.minimumRate") ?? AnomalyPolicySpec.DefaultMinimumRate,
            Real("maxErrorRatio", AnomalyPolicySpec.DefaultMaxErrorRatio),
            Duration("minimumHistory", AnomalyPolicySpec.DefaultMinimumHistory),
            reader.Number(SpecReader.Child(spec, "throttleRate"), "spec.throttleRate") ?? AnomalyPolicySpec.DefaultThrottleRate,
            Duration("quarantineAfter", AnomalyPolicySpec.DefaultQuarantineAfter),
            Duration("coolOff", AnomalyPolicySpec.DefaultCoolOff),
            reader.Bool(spec, "revokeOnQuarantine", "spec") ?? false));

        T Invalid<T>(T fallback, string path, string message)
        {
            reader.Errors.Add(path, message);
            return fallback;
        }

        TimeSpan Duration(string key, TimeSpan fallback)
        {
            var text = reader.Text(spec, key, "spec");
            return text is null ? fallback
                : Durations.TryParse(text, out var value) ? value
                : Invalid(fallback, $"spec.{key}", $"'{text}' is not a duration: use a positive number with s, m, h or d (e.g. 90s, 15m, 1h)");
        }

        double Real(string key, double fallback)
        {
            var text = reader.Text(spec, key, "spec");
            return text is null ? fallback
                : double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) ? value
                : Invalid(fallback, $"spec.{key}", $"'{text}' is not a number");
        }
    }

    protected override void WriteSpec(AnomalyPolicy resource, Utf8JsonWriter json)
    {
        var spec = resource.Spec;
        ResourceWriter.Selector(json, spec.Selector);
        json.WriteString("mode", spec.Mode == AnomalyMode.Enforce ? "Enforce" : "DryRun");
        json.WriteString("halfLife", Durations.Format(spec.HalfLife));
        json.WriteNumber("multiple", spec.Multiple);
        json.WriteNumber("minimumRate", spec.MinimumRate);
        json.WriteNumber("maxErrorRatio", spec.MaxErrorRatio);
        json.WriteString("minimumHistory", Durations.Format(spec.MinimumHistory));
        json.WriteNumber("throttleRate", spec.ThrottleRate);
        json.WriteString("quarantineAfter", Durations.Format(spec.QuarantineAfter));
        json.WriteString("coolOff", Durations.Format(spec.CoolOff));
        json.WriteBoolean("revokeOnQuarantine", spec.RevokeOnQuarantine);
    }

    protected override void Validate(AnomalyPolicy resource, ErrorSink errors)
    {
        var spec = resource.Spec;
        Positive(spec.HalfLife, "spec.halfLife");
        Positive(spec.MinimumHistory, "spec.minimumHistory");
        Positive(spec.QuarantineAfter, "spec.quarantineAfter");
        Positive(spec.CoolOff, "spec.coolOff");
        if (!(spec.Multiple >= 2 && spec.Multiple <= MaxMultiple))
        {
            errors.Add("spec.multiple", $"{Format(spec.Multiple)} must be between 2 and {Format(MaxMultiple)}: a caller is anomalous above this multiple of its baseline");
        }
        if (spec.MinimumRate < 1)
        {
            errors.Add("spec.minimumRate", $"{spec.MinimumRate} must be at least 1 (requests per minute)");
        }
        if (!(spec.MaxErrorRatio > 0 && spec.MaxErrorRatio <= 1))
        {
            errors.Add("spec.maxErrorRatio", $"{Format(spec.MaxErrorRatio)} must be above 0 and at most 1 (1 never reacts to errors)");
        }
        if (spec.ThrottleRate < 1)
        {
            errors.Add("spec.throttleRate", $"{spec.ThrottleRate} must be at least 1 (requests per minute a throttled caller keeps)");
        }
        else if (spec.ThrottleRate >= spec.MinimumRate && spec.MinimumRate >= 1)
        {
            // A caller that keeps to its throttle must read as quiet, or it could never cool off.
            errors.Add("spec.throttleRate", $"{spec.ThrottleRate} must be below minimumRate ({spec.MinimumRate}): a caller keeping to its throttle must not look anomalous");
        }

        void Positive(TimeSpan value, string path)
        {
            if (value <= TimeSpan.Zero || value > MaxDuration)
            {
                errors.Add(path, $"{Durations.Format(value)} must be above 0 and at most {Durations.Format(MaxDuration)}");
            }
        }
    }

    private static string Format(double value) => value.ToString("0.###", CultureInfo.InvariantCulture);
}
