using System.CommandLine;
using System.ComponentModel;
using System.Diagnostics;
using ZeroTrustMesh.CommandLine;

namespace ZeroTrustMesh.Sidecar.Capture;

/// <summary>
/// <c>ztm-sidecar capture</c>: the pod's traffic-capture init step. Writes the nat rules of <see cref="CaptureRules"/>
/// with one <c>iptables-restore</c> call (atomic, nothing written to the file system, so it runs with a read-only root
/// file system and only NET_ADMIN and NET_RAW, as UID 0), or prints them with <c>--dry-run</c>.
/// </summary>
internal static class CaptureCommand
{
    /// <summary>Exit code when the rules could not be written.</summary>
    public const int ApplyFailed = 1;

    private static readonly TimeSpan IptablesTimeout = TimeSpan.FromSeconds(30);

    public static Command Create()
    {
        var inboundPort = new Option<int>("--inbound-port") { Description = "The sidecar's inbound mTLS port: inbound TCP is redirected there", DefaultValueFactory = _ => 15006 };
        var outboundPort = new Option<int>("--outbound-port") { Description = "The sidecar's outbound port: the pod's outgoing TCP is redirected there", DefaultValueFactory = _ => 15001 };
        var proxyUid = new Option<int>("--proxy-uid") { Description = "The sidecar's UID: its own connections are not captured", DefaultValueFactory = _ => 1337 };
        var excludeInbound = new Option<string?>("--exclude-inbound-ports") { Description = $"Inbound ports not captured, comma-separated (the inbound port and {CaptureSettings.HealthPort} never are)" };
        var excludeOutbound = new Option<string?>("--exclude-outbound-ports") { Description = "Destination ports not captured, comma-separated" };
        var excludeCidrs = new Option<string?>("--exclude-outbound-cidrs") { Description = "Destination IPv4 CIDRs not captured, comma-separated (127.0.0.0/8 never is)" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the rules (iptables-restore input) and apply nothing" };

        var command = new Command("capture", "Write the pod's iptables nat rules that send its TCP traffic through the sidecar (the init step; needs NET_ADMIN and NET_RAW)")
        {
            inboundPort, outboundPort, proxyUid, excludeInbound, excludeOutbound, excludeCidrs, dryRun,
        };
        command.SetAction(result =>
        {
            var settings = CaptureSettings.TryCreate(result.GetValue(inboundPort), result.GetValue(outboundPort), result.GetValue(proxyUid),
                result.GetValue(excludeInbound), result.GetValue(excludeOutbound), result.GetValue(excludeCidrs), out var error);
            if (settings is null)
            {
                Console.Error.WriteLine($"ztm-sidecar capture: {error}");
                return CommandLineOptions.UsageError;
            }
            if (result.GetValue(dryRun))
            {
                Console.Out.Write(CaptureRules.Render(settings));
                return 0;
            }
            return Apply(settings);
        });
        return command;
    }

    private static int Apply(CaptureSettings settings)
    {
        try
        {
            var existing = Run("iptables-save", ["-t", "nat"], stdin: null);
            var rules = CaptureRules.Render(settings, existing);
            Run("iptables-restore", ["--noflush"], rules);
            Console.Out.Write(rules);
            Console.Out.WriteLine($"ztm-sidecar capture: applied (inbound TCP -> {settings.InboundPort}, outbound TCP -> {settings.OutboundPort}, UID {settings.ProxyUid} not captured)");
            return 0;
        }
        catch (CaptureException e)
        {
            Console.Error.WriteLine($"ztm-sidecar capture: {e.Message}");
            return ApplyFailed;
        }
    }

    private static string Run(string file, string[] args, string? stdin)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardInput = stdin is not null,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new CaptureException($"{file} did not start");
        }
        catch (Win32Exception e)
        {
            throw new CaptureException($"cannot run {file}: {e.Message} (the sidecar image has it; elsewhere install iptables)");
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (stdin is not null)
            {
                process.StandardInput.Write(stdin);
                process.StandardInput.Close();
            }
            if (!process.WaitForExit(IptablesTimeout))
            {
                process.Kill();
                throw new CaptureException($"{file} did not finish within {IptablesTimeout.TotalSeconds:0} s");
            }
            if (process.ExitCode != 0)
            {
                var why = string.Join("; ", (stderr.Result + stdout.Result).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                throw new CaptureException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {why} (it needs NET_ADMIN and NET_RAW, as UID 0)");
            }
            return stdout.Result;
        }
    }

    private sealed class CaptureException(string message) : Exception(message);
}
