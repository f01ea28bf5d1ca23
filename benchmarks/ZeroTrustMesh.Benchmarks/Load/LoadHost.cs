using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Xml.Linq;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>Facts about this host and small process helpers shared by the data-plane harness and its proxy pairs.</summary>
internal static class LoadHost
{
    public static string RepoRoot =>
        typeof(LoadHost).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepoRoot").Value!;

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Waits until <paramref name="port"/> accepts a TCP connection (or the process exits, or the timeout passes).</summary>
    public static async Task WaitForPortAsync(LoadProcess process, int port, TimeSpan timeout)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline && !process.HasExited)
        {
            try
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(20);
            }
        }
        throw new InvalidOperationException($"{process.Name} is not listening on 127.0.0.1:{port}{(process.HasExited ? " (it exited)" : "")}. Output:\n{process.Output}");
    }

    public static double LoadAverage() =>
        double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);

    public static string CpuModel() =>
        File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";

    public static string Kernel() => File.ReadAllText("/proc/sys/kernel/osrelease").Trim();

    /// <summary>The GC the sidecar is built with (its csproj; NativeAOT bakes it in, no runtimeconfig to read).</summary>
    public static string SidecarGc()
    {
        var project = XDocument.Load(Path.Combine(RepoRoot, "sidecar/ZeroTrustMesh.Sidecar/ZeroTrustMesh.Sidecar.csproj"));
        string? Property(string name) => project.Descendants(name).FirstOrDefault()?.Value;
        var server = Property("ServerGarbageCollection") == "true" ? "server" : "workstation";
        var concurrent = Property("ConcurrentGarbageCollection") == "false" ? "non-concurrent" : "concurrent";
        return $"{server}, {concurrent} (sidecar csproj)";
    }

    public static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);

    /// <summary>The first line a tool prints (stdout, then stderr) for <paramref name="args"/>, e.g. its version.</summary>
    public static string FirstLine(string file, string args)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
            var text = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
            process.WaitForExit(5000);
            return text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? file;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return $"{file}: not found";
        }
    }
}
