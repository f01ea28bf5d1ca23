using System.Text;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.Policy.Tests;

/// <summary>AnomalyPolicy: defaults, every error with its path, the wire form, and that sidecars never receive it.</summary>
public sealed class AnomalyPolicyTests
{
    private const string Header = "apiVersion: security.ztm.dev/v1\nkind: AnomalyPolicy\nmetadata: {name: a, namespace: shop}\n";

    [Fact]
    public void An_empty_spec_takes_every_default_in_dry_run()
    {
        var result = PolicyYaml.Load("a.yaml", Header + "spec: {}\n");

        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        var policy = Assert.IsType<AnomalyPolicy>(result.Documents[0].Resource);
        Assert.Equal(AnomalyPolicySpec.Defaults(null), policy.Spec);
        Assert.Equal(AnomalyMode.DryRun, policy.Spec.Mode);
        Assert.Null(policy.Selector);
    }

    [Fact]
    public void Thresholds_are_read_as_written_and_survive_the_wire_form()
    {
        var result = PolicyYaml.Load("a.yaml", Header + """
            spec:
              selector: {service: orders}
              mode: Enforce
              halfLife: 30m
              multiple: 2.5
              minimumRate: 30
              maxErrorRatio: 0.25
              minimumHistory: 90s
              throttleRate: 10
              quarantineAfter: 2m
              coolOff: 1h
              revokeOnQuarantine: true
            """);

        Assert.True(result.IsValid, string.Join("\n", result.Errors));
        var policy = Assert.IsType<AnomalyPolicy>(result.Documents[0].Resource);
        Assert.Equal(new AnomalyPolicySpec(new("orders"), AnomalyMode.Enforce, TimeSpan.FromMinutes(30), 2.5, 30, 0.25, TimeSpan.FromSeconds(90), 10,
            TimeSpan.FromMinutes(2), TimeSpan.FromHours(1), RevokeOnQuarantine: true), policy.Spec);
        var wire = AnomalyPolicyKind.Instance.ToWire(policy);
        Assert.Equal(policy, AnomalyPolicyKind.Instance.FromWire(wire));
        Assert.Contains("\"halfLife\":\"30m\"", Encoding.UTF8.GetString(wire), StringComparison.Ordinal);
    }

    [Fact]
    public void Every_error_is_reported_with_its_path()
    {
        var errors = PolicyYaml.Load("a.yaml", Header + """
            spec:
              mode: Block
              halfLife: forever
              multiple: 1
              minimumRate: 0
              maxErrorRatio: 1.5
              minimumHistory: -5m
              throttleRate: x
              quarantineAfter: 30d
              coolOff: 0s
              revokeOnQuarantine: maybe
              treshold: 3
            """).Errors.Select(e => e.ToString()).ToArray();

        Assert.Contains("a.yaml#1 spec.mode: 'Block' is not a mode: use DryRun or Enforce", errors);
        Assert.Contains("a.yaml#1 spec.halfLife: 'forever' is not a duration: use a positive number with s, m, h or d (e.g. 90s, 15m, 1h)", errors);
        Assert.Contains("a.yaml#1 spec.multiple: 1 must be between 2 and 1000000: a caller is anomalous above this multiple of its baseline", errors);
        Assert.Contains("a.yaml#1 spec.minimumRate: 0 must be at least 1 (requests per minute)", errors);
        Assert.Contains("a.yaml#1 spec.maxErrorRatio: 1.5 must be above 0 and at most 1 (1 never reacts to errors)", errors);
        Assert.Contains("a.yaml#1 spec.minimumHistory: '-5m' is not a duration: use a positive number with s, m, h or d (e.g. 90s, 15m, 1h)", errors);
        Assert.Contains("a.yaml#1 spec.throttleRate: 'x' is not a whole number", errors);
        Assert.Contains("a.yaml#1 spec.quarantineAfter: 30d must be above 0 and at most 7d", errors);
        Assert.Contains("a.yaml#1 spec.coolOff: '0s' is not a duration: use a positive number with s, m, h or d (e.g. 90s, 15m, 1h)", errors);
        Assert.Contains("a.yaml#1 spec.revokeOnQuarantine: 'maybe' is not a boolean: use true or false", errors);
        Assert.Contains(errors, e => e.StartsWith("a.yaml#1 spec.treshold: unknown field 'treshold'", StringComparison.Ordinal));
        Assert.Equal(11, errors.Length);
    }

    [Fact]
    public void A_throttle_a_caller_could_keep_to_and_still_look_anomalous_is_refused()
    {
        var errors = PolicyYaml.Load("a.yaml", Header + "spec: {minimumRate: 30, throttleRate: 30}\n").Errors.Select(e => e.ToString());

        Assert.Equal(["a.yaml#1 spec.throttleRate: 30 must be below minimumRate (30): a caller keeping to its throttle must not look anomalous"], errors);
    }

    [Fact]
    public void Sidecars_never_receive_it_and_operators_find_it_by_its_plural()
    {
        Assert.False(AnomalyPolicyKind.Instance.SentToSidecars);
        Assert.True(RateLimitPolicyKind.Instance.SentToSidecars);
        Assert.Same(AnomalyPolicyKind.Instance, PolicyKinds.Builtin.Find("anomalypolicies"));
    }
}
