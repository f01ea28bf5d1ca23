using System.Globalization;
using System.Text;

namespace ZeroTrustMesh.Sidecar.Capture;

/// <summary>
/// The pod's nat rules as <c>iptables-restore --noflush</c> input: a pure function of the settings (and of which of
/// our jumps the table already holds), so what the init step writes is unit-tested without a kernel.
/// </summary>
/// <remarks>
/// Chains as Istio's istio-iptables lays them out:
/// <list type="number">
/// <item><c>PREROUTING -p tcp → ZTM_INBOUND</c>: connections arriving at the pod. The sidecar's own inbound and health
/// ports and the excluded ones RETURN; everything else goes to <c>ZTM_IN_REDIRECT</c>, which redirects to the inbound
/// mTLS port. So a caller that dials the app's port directly lands on the sidecar, which speaks only mTLS.</item>
/// <item><c>OUTPUT -p tcp → ZTM_OUTPUT</c>: connections the pod opens. The sidecar's own (its UID) RETURN first — its
/// calls to the app on loopback and its mTLS calls to other pods must not come back to itself —, then loopback,
/// excluded ports and excluded CIDRs; everything else goes to <c>ZTM_REDIRECT</c>, which redirects to the outbound port,
/// where the sidecar reads the original destination.</item>
/// </list>
/// Only the nat table is written and nothing else in it is touched (<c>--noflush</c>): Docker's embedded DNS, for
/// one, keeps its own nat rules in a container's namespace. Declaring our chains flushes them, so running capture
/// again replaces our rules; the jumps into them from PREROUTING and OUTPUT are deleted first when already there.
/// </remarks>
internal static class CaptureRules
{
    public const string Inbound = "ZTM_INBOUND";
    public const string InboundRedirect = "ZTM_IN_REDIRECT";
    public const string Output = "ZTM_OUTPUT";
    public const string Redirect = "ZTM_REDIRECT";

    private const string PreroutingJump = "-A PREROUTING -p tcp -j " + Inbound;
    private const string OutputJump = "-A OUTPUT -p tcp -j " + Output;

    /// <param name="existingNat">The nat table as <c>iptables-save -t nat</c> prints it, or "" for an empty one.</param>
    public static string Render(CaptureSettings settings, string existingNat = "")
    {
        var rules = new StringBuilder();
        void Line(string line) => rules.Append(line).Append('\n');
        static string I(int value) => value.ToString(CultureInfo.InvariantCulture);

        Line("*nat");
        foreach (var chain in (string[])[Inbound, InboundRedirect, Output, Redirect])
        {
            Line($":{chain} - [0:0]");
        }
        var existing = existingNat.Split('\n', StringSplitOptions.TrimEntries);
        foreach (var jump in (string[])[PreroutingJump, OutputJump])
        {
            if (existing.Contains(jump, StringComparer.Ordinal))
            {
                Line("-D" + jump[2..]);
            }
        }
        Line(PreroutingJump);
        Line(OutputJump);

        foreach (var port in new[] { settings.InboundPort, CaptureSettings.HealthPort }.Concat(settings.ExcludeInboundPorts).Distinct())
        {
            Line($"-A {Inbound} -p tcp -m tcp --dport {I(port)} -j RETURN");
        }
        Line($"-A {Inbound} -p tcp -j {InboundRedirect}");
        Line($"-A {InboundRedirect} -p tcp -j REDIRECT --to-ports {I(settings.InboundPort)}");

        Line($"-A {Output} -m owner --uid-owner {I(settings.ProxyUid)} -j RETURN");
        Line($"-A {Output} -d 127.0.0.0/8 -j RETURN");
        foreach (var port in settings.ExcludeOutboundPorts)
        {
            Line($"-A {Output} -p tcp -m tcp --dport {I(port)} -j RETURN");
        }
        foreach (var cidr in settings.ExcludeOutboundCidrs)
        {
            Line($"-A {Output} -d {cidr} -j RETURN");
        }
        Line($"-A {Output} -j {Redirect}");
        Line($"-A {Redirect} -p tcp -j REDIRECT --to-ports {I(settings.OutboundPort)}");
        Line("COMMIT");
        return rules.ToString();
    }
}
