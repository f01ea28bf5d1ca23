namespace ZeroTrustMesh.Sidecar;

/// <summary>
/// Runtime settings that exist only as environment variables, set for this process unless the environment already
/// has them. (Settings with a runtime-configuration knob are in the csproj instead.)
/// </summary>
internal static class RuntimeDefaults
{
    /// <summary>
    /// Arrays of each size that <c>ArrayPool&lt;T&gt;.Shared</c> keeps per core: 4 instead of 32. YARP's body copies
    /// (64 KB each), SslStream and HttpClient rent from it, and under load the pool fills to its limit and then keeps
    /// everything, trimming one array a minute at most: measured at 1000 req/s after the capacity runs
    /// (dataplane-load, one run each), gen2 11.7-13.4 MB of pooled buffers and 26-33 MB committed with the default,
    /// 4.0-4.8 MB and 12-16 MB with 4 — and no more CPU per request at capacity (0.075/0.081 s per 1000 requests).
    /// The pool reads it once, on first use.
    /// </summary>
    public const string MaxPooledArraysPerCore = "DOTNET_SYSTEM_BUFFERS_SHAREDARRAYPOOL_MAXARRAYSPERPARTITION";

    public static void Apply()
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(MaxPooledArraysPerCore)))
        {
            Environment.SetEnvironmentVariable(MaxPooledArraysPerCore, "4");
        }
    }
}
