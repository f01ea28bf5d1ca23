using ZeroTrustMesh.Policy.L4;

namespace ZeroTrustMesh.Proto;

/// <summary>The one mapping between <see cref="Policy.L4.PortModes"/> and its wire form.</summary>
public static class PortModesMapping
{
    public static V1.PortModes ToProto(this PortModes modes)
    {
        ArgumentNullException.ThrowIfNull(modes);
        var proto = new V1.PortModes { L4Enabled = modes.Enabled, AllPortsL7 = modes.AllPortsL7 ?? "" };
        foreach (var (port, reason) in modes.L7Ports)
        {
            proto.L7Ports[(uint)port] = reason;
        }
        return proto;
    }

    /// <summary>The model of received port modes; none (a control plane from before L4 mode): <see cref="PortModes.Off"/>.</summary>
    /// <exception cref="FormatException">A port outside 1..65535.</exception>
    public static PortModes FromProto(V1.PortModes? modes)
    {
        if (modes is null || !modes.L4Enabled)
        {
            return PortModes.Off;
        }
        if (modes.L7Ports.Keys.Where(p => p is 0 or > 65535).ToList() is [var bad, ..])
        {
            throw new FormatException($"port modes: L7 port {bad} is not in 1..65535");
        }
        return new PortModes(true, modes.AllPortsL7, modes.L7Ports.Select(p => KeyValuePair.Create((int)p.Key, p.Value)));
    }
}
