using System.Diagnostics;
using System.Globalization;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>
/// Runs a test only as root and only where the commands it runs exist: network namespaces and iptables need root, and
/// a fresh machine or a slim container may lack iptables. Otherwise the test is skipped with the reason and what to
/// install, rather than failing with "exec of iptables failed" halfway through.
/// </summary>
internal sealed class RootFactAttribute : FactAttribute
{
    /// <summary>The Debian package each command comes in, for the skip reason.</summary>
    private static readonly Dictionary<string, string> Packages = new(StringComparer.Ordinal)
    {
        ["ip"] = "iproute2",
        ["iptables"] = "iptables",
        ["curl"] = "curl",
        ["bash"] = "bash",
        ["timeout"] = "coreutils",
    };

    /// <param name="commands">The commands the test runs, looked up on PATH.</param>
    public RootFactAttribute(params string[] commands)
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("USER") is not "root" && Environment.UserName != "root")
        {
            Skip = "needs root: it creates network namespaces, veth links and iptables rules";
            return;
        }
        var missing = commands.Where(c => Executable.Find(c) is null).ToList();
        if (missing.Count > 0)
        {
            var install = string.Join(' ', missing.Select(c => Packages.GetValueOrDefault(c, c)).Distinct());
            Skip = $"needs {string.Join(", ", missing)}, not found on PATH (apt-get install {install})";
        }
    }
}

/// <summary>Where a command would be found, the way a shell looks it up.</summary>
internal static class Executable
{
    public static string? Find(string command, string? path = null)
    {
        foreach (var directory in (path ?? Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(directory, command);
            if (File.Exists(candidate) && (File.GetUnixFileMode(candidate) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0)
            {
                return candidate;
            }
        }
        return null;
    }
}

/// <summary>
/// Two hosts on one machine: network namespaces joined by a veth pair on a /24 of 10.250.x.0 that exists only
/// inside them. Everything is removed on dispose. Commands run with <c>ip netns exec</c>.
/// </summary>
internal sealed class TwoHosts : IAsyncDisposable
{
    private readonly string _suffix = Random.Shared.Next(0x1000, 0xFFFF).ToString("x", CultureInfo.InvariantCulture);
    private readonly int _subnet = Random.Shared.Next(1, 250);

    public string A => "ztm-a-" + _suffix;

    public string B => "ztm-b-" + _suffix;

    public string AddressA => $"10.250.{_subnet}.1";

    public string AddressB => $"10.250.{_subnet}.2";

    /// <summary>An address no host has, for a service clients dial and the sidecar captures (like a ClusterIP).</summary>
    public string VirtualAddress => $"10.250.{_subnet}.100";

    public static async Task<TwoHosts> CreateAsync()
    {
        var hosts = new TwoHosts();
        var vethA = "za" + hosts._suffix;
        var vethB = "zb" + hosts._suffix;
        await RunAsync("ip", "netns", "add", hosts.A);
        await RunAsync("ip", "netns", "add", hosts.B);
        await RunAsync("ip", "link", "add", vethA, "type", "veth", "peer", "name", vethB);
        await RunAsync("ip", "link", "set", vethA, "netns", hosts.A);
        await RunAsync("ip", "link", "set", vethB, "netns", hosts.B);
        foreach (var (ns, veth, address) in new[] { (hosts.A, vethA, hosts.AddressA), (hosts.B, vethB, hosts.AddressB) })
        {
            await RunAsync("ip", "-n", ns, "link", "set", "lo", "up");
            await RunAsync("ip", "-n", ns, "addr", "add", address + "/24", "dev", veth);
            await RunAsync("ip", "-n", ns, "link", "set", veth, "up");
        }
        return hosts;
    }

    /// <summary>Runs a command inside namespace <paramref name="ns"/> to completion and returns its output.</summary>
    public static Task<string> ExecAsync(string ns, params string[] command) => RunAsync("ip", ["netns", "exec", ns, .. command]);

    public static async Task<string> RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{file} {string.Join(' ', args)}' exited {process.ExitCode}: {await stderr}{await stdout}");
        }
        return await stdout;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var ns in new[] { A, B })
        {
            try
            {
                await RunAsync("ip", "netns", "delete", ns); // also removes its veth end and its iptables rules
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
        }
    }
}
