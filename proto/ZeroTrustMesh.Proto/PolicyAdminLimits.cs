namespace ZeroTrustMesh.Proto;

/// <summary>Limits of the policy admin API that ztmctl checks before sending and the control plane enforces.</summary>
public static class PolicyAdminLimits
{
    /// <summary>The most policy YAML (UTF-8 bytes) one apply may carry, every file of it together.</summary>
    public const int MaxApplyBytes = 1024 * 1024;

    /// <summary>The refusal of an apply over <see cref="MaxApplyBytes"/>, the same wherever it is refused.</summary>
    public static string TooLarge(string source, long bytes) =>
        $"{source}: {bytes:N0} bytes of policy; at most {MaxApplyBytes:N0} bytes (1 MiB) are accepted per apply: nothing applied";
}
