namespace ZeroTrustMesh.Sidecar;

/// <summary>
/// Runtime settings that exist only as environment variables, set for this process unless the environment already
/// has them. (Settings with a runtime-configuration knob are in the csproj instead.)
/// </summary>
internal static class RuntimeDefaults
{
    /// <summary>
    /// Arrays of each size that <c>ArrayPool&lt;T&gt;.Shared</c> keeps per core: 16 instead of 32. YARP's body copies
    /// (64 KB each), SslStream and HttpClient rent from it, and under load the pool fills to its limit and then keeps
    /// everything, trimming one array a minute at most. Measured at 1000 req/s after the capacity runs (dataplane-load,
    /// mid-run /config_dump): gen2 11.7-13.4 MB of pooled buffers and 26-33 MB committed with 32; 3.9-7.3 MB and
    /// 14-15 MB with 16; 3.6-5.1 MB and 10-16 MB with 4, but with 4 the frontend sidecar allocated a fresh 64 KB copy
    /// buffer for most requests at capacity (GC allocation 8.8 % of its CPU in perf, 2.8 % with 16 or 32).
    /// The pool reads it once, on first use.
    /// </summary>
    public const string MaxPooledArraysPerCore = "DOTNET_SYSTEM_BUFFERS_SHAREDARRAYPOOL_MAXARRAYSPERPARTITION";

    public static void Apply()
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(MaxPooledArraysPerCore)))
        {
            Environment.SetEnvironmentVariable(MaxPooledArraysPerCore, "16");
        }
    }
}
