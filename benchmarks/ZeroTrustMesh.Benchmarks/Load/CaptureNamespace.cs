using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// A network namespace that plays a pod for the L4 target, as <c>L4ModeEndToEndTests</c> sets one up: loopback, and an
/// interface on a /24 of 10.252.x.0 that exists only inside it, whose <see cref="VirtualAddress"/> no process
/// owns (a ClusterIP). The mesh of the L4 target runs inside; the nat rule that captures the client's connections is
/// this namespace's own, never the host's. The harness reaches inside without a link to the host: sockets made on a
/// thread that joined the namespace (<c>setns</c>) belong to it wherever they are used afterwards, which is what
/// <see cref="Client"/> (the in-process load client) and <see cref="Forward"/> (the control plane's API) use. Removed
/// on dispose, with its interface and rules.
/// </summary>
internal sealed class CaptureNamespace : IAsyncDisposable
{
    private const int CloneNewNet = 0x40000000;
    private static readonly string[] Commands = ["ip", "iptables"];

    private readonly BlockingCollection<TaskCompletionSource<Socket>> _socketRequests = new();
    private readonly List<TcpListener> _forwarders = [];
    private readonly CancellationTokenSource _stop = new();

    private CaptureNamespace(string name, string subnet)
    {
        Name = name;
        Subnet = subnet;
    }

    public string Name { get; }

    private string Subnet { get; }

    /// <summary>The service address the client dials; only the capture rule knows where it goes.</summary>
    public string VirtualAddress => $"{Subnet}.100";

    /// <summary>Why the L4 target cannot run on this machine (it needs root, <c>ip</c> and <c>iptables</c>); null when it can.</summary>
    public static string? Unavailable()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
        {
            return "needs root: it creates a network namespace and an iptables rule inside it";
        }
        var missing = Commands.Where(c => LoadHost.Which(c) is null).ToList();
        return missing.Count == 0 ? null : $"needs {string.Join(" and ", missing)} (apt-get install iproute2 iptables)";
    }

    public static async Task<CaptureNamespace> CreateAsync(CancellationToken cancellation)
    {
        var suffix = Random.Shared.Next(0x1000, 0xFFFF).ToString("x", CultureInfo.InvariantCulture);
        var subnet = $"10.252.{Random.Shared.Next(1, 250)}";
        var ns = new CaptureNamespace("ztm-l4-" + suffix, subnet);
        await RunAsync(["ip", "netns", "add", ns.Name], cancellation);
        try
        {
            await RunAsync(["ip", "-n", ns.Name, "link", "set", "lo", "up"], cancellation);
            // A veth pair with both ends inside (the dummy driver is often missing from container kernels): the route to the subnet.
            await RunAsync(["ip", "-n", ns.Name, "link", "add", "ztm-svc", "type", "veth", "peer", "name", "ztm-svc-peer"], cancellation);
            await RunAsync(["ip", "-n", ns.Name, "addr", "add", $"{subnet}.1/24", "dev", "ztm-svc"], cancellation);
            await RunAsync(["ip", "-n", ns.Name, "link", "set", "ztm-svc-peer", "up"], cancellation);
            await RunAsync(["ip", "-n", ns.Name, "link", "set", "ztm-svc", "up"], cancellation);
            await ns.StartSocketThreadAsync();
            return ns;
        }
        catch
        {
            await ns.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Captures every TCP connection made inside the namespace to <see cref="VirtualAddress"/>:<paramref name="port"/>
    /// into <paramref name="outboundPort"/> (the calling sidecar's outbound listener), as the injector's init step does in a pod.
    /// </summary>
    public Task CaptureAsync(int port, int outboundPort, CancellationToken cancellation) =>
        RunAsync(["ip", "netns", "exec", Name, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", VirtualAddress,
            "--dport", port.ToString(CultureInfo.InvariantCulture), "-j", "REDIRECT", "--to-ports", outboundPort.ToString(CultureInfo.InvariantCulture)], cancellation);

    /// <summary>The command line that runs <paramref name="file"/> inside the namespace (<c>ip netns exec</c> execs it: the PID is the program's).</summary>
    public (string File, IEnumerable<string> Args) Exec(string file, IEnumerable<string> args) => ("ip", ["netns", "exec", Name, file, .. args]);

    /// <summary>A TCP socket of this namespace.</summary>
    public Task<Socket> SocketAsync()
    {
        var request = new TaskCompletionSource<Socket>(TaskCreationOptions.RunContinuationsAsynchronously);
        _socketRequests.Add(request);
        return request.Task;
    }

    /// <summary>An HTTP/1.1 client (<see cref="LoadClients.Client"/>) whose connections start inside the namespace.</summary>
    public HttpClient Client(int maxConnections) => LoadClients.Client(maxConnections, async (context, cancellation) =>
    {
        var socket = await SocketAsync();
        try
        {
            await socket.ConnectAsync(context.DnsEndPoint, cancellation);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    });

    /// <summary>
    /// A loopback port on the host that relays each connection to <paramref name="inside"/> (an address on the namespace's
    /// loopback), bytes both ways: the harness calls the control plane's API through it; TLS runs end to end.
    /// </summary>
    public Uri Forward(Uri inside)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        _forwarders.Add(listener);
        var target = new IPEndPoint(IPAddress.Parse(inside.Host), inside.Port);
        _ = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket accepted;
                try
                {
                    accepted = await listener.AcceptSocketAsync(_stop.Token);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }
                _ = RelayAsync(accepted, target);
            }
        });
        return new UriBuilder(inside) { Host = "127.0.0.1", Port = ((IPEndPoint)listener.LocalEndpoint).Port }.Uri;
    }

    private async Task RelayAsync(Socket accepted, IPEndPoint target)
    {
        using (accepted)
        {
            using var inner = await SocketAsync();
            try
            {
                await inner.ConnectAsync(target, _stop.Token);
                await using var a = new NetworkStream(accepted, ownsSocket: false);
                await using var b = new NetworkStream(inner, ownsSocket: false);
                await Task.WhenAll(CopyAsync(a, inner), CopyAsync(b, accepted));
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // One relayed connection ended badly; the caller sees it closed.
            }
        }

        async Task CopyAsync(Stream from, Socket to)
        {
            await using var toStream = new NetworkStream(to, ownsSocket: false);
            await from.CopyToAsync(toStream, _stop.Token);
            to.Shutdown(SocketShutdown.Send);
        }
    }

    private Task StartSocketThreadAsync()
    {
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            // This thread joins the namespace for good; a socket belongs to the namespace of the thread that made it.
            using (var handle = File.OpenHandle($"/var/run/netns/{Name}"))
            {
                if (Native.setns((int)handle.DangerousGetHandle(), CloneNewNet) != 0)
                {
                    ready.TrySetException(new InvalidOperationException($"setns into {Name} failed: errno {Marshal.GetLastPInvokeError()}"));
                    return;
                }
            }
            ready.TrySetResult();
            foreach (var request in _socketRequests.GetConsumingEnumerable())
            {
                try
                {
                    request.TrySetResult(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true });
                }
                catch (SocketException e)
                {
                    request.TrySetException(e);
                }
            }
        })
        {
            IsBackground = true,
            Name = "netns " + Name,
        };
        thread.Start();
        return ready.Task;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        foreach (var listener in _forwarders)
        {
            listener.Stop();
        }
        _socketRequests.CompleteAdding();
        try
        {
            await RunAsync(["ip", "netns", "delete", Name], CancellationToken.None); // its interface and nat rules go with it
        }
        catch (InvalidOperationException e)
        {
            DataPlaneLoad.Log($"{Name} not removed: {e.Message}");
        }
        _stop.Dispose();
        _socketRequests.Dispose();
    }

    private static async Task RunAsync(string[] command, CancellationToken cancellation)
    {
        var (file, args) = (command[0], command[1..]);
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(cancellation);
        var stderr = process.StandardError.ReadToEndAsync(cancellation);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{file} {string.Join(' ', args)}' exited {process.ExitCode}: {await stderr}{await stdout}");
        }
    }

    private static class Native
    {
        [DllImport("libc", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int setns(int fd, int nstype);
    }
}
