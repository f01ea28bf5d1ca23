using System.Reflection;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>Where the built executables are: the same configuration as this test assembly.</summary>
internal static class Executables
{
    /// <summary>The repository this test assembly was built from (for files the tests read, like the chart's).</summary>
    public static readonly string RepoRoot = Metadata("RepoRoot");
    private static readonly string Configuration = Metadata("Configuration");

    public static string ControlPlane => Dll("control-plane/ZeroTrustMesh.ControlPlane", "ztm-controlplane");

    public static string Ztmctl => Dll("control-plane/ZeroTrustMesh.Cli", "ztmctl");

    public static string Sidecar => Dll("sidecar/ZeroTrustMesh.Sidecar", "ztm-sidecar");

    public static string DemoApp => Dll("demo/ZeroTrustMesh.DemoApp", "ztm-demo-app");

    /// <summary>The benchmarks console (BenchmarkDotNet, <c>signing-load</c>, <c>dataplane-load</c>).</summary>
    public static string Benchmarks => Dll("benchmarks/ZeroTrustMesh.Benchmarks", "ZeroTrustMesh.Benchmarks");

    /// <summary><c>ztm-bare-proxy</c>: the sidecar's stack without our code, for the harness's bare-stack pair.</summary>
    public static string BareProxy => Dll("benchmarks/ZeroTrustMesh.BareProxy", "ztm-bare-proxy");

    public static string FloorRelay => Dll("benchmarks/ZeroTrustMesh.FloorRelay", "ztm-floor-relay");

    private static string Dll(string project, string name)
    {
        var path = Path.Combine(RepoRoot, project, "bin", Configuration, "net10.0", name + ".dll");
        return File.Exists(path) ? path : throw new FileNotFoundException($"{name} is not built at {path}; run 'dotnet build ZeroTrustMesh.sln -c {Configuration}'.");
    }

    private static string Metadata(string key) =>
        typeof(Executables).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value!;
}
