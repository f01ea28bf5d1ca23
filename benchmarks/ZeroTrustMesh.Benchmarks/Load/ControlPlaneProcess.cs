using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// The real <c>ztm-controlplane</c> as a child process on loopback, port 0, with its own temporary data
/// directory and HOME. Its output is drained all the time (it logs one line per issuance, and a full pipe
/// would stall it); the start-up signal is the "listening on" line, awaited with a timeout.
/// </summary>
internal sealed class ControlPlaneProcess : IAsyncDisposable
{
    private const string ListeningPrefix = "ztm-controlplane: listening on ";
    private const int KeptLines = 200;

    private readonly Process _process;
    private readonly Lock _gate = new();
    private readonly Queue<string> _lastLines = new();
    private readonly TaskCompletionSource<string> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _issuedLines;
    private long _refusedLines;

    private ControlPlaneProcess(string dll, string root, CaptureNamespace? netns, IEnumerable<string> extraArgs)
    {
        Root = root;
        DataDir = Path.Combine(root, "data");
        IEnumerable<string> args = [dll, "--data-dir", DataDir, "--listen", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--operator-config", Path.Combine(root, "config"), .. extraArgs];
        var (file, arguments) = netns is null ? ("dotnet", args) : netns.Exec("dotnet", args);
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var arg in arguments)
        {
            start.ArgumentList.Add(arg);
        }
        // Nothing of this run may touch the user's ~/.ztm.
        start.Environment["HOME"] = root;
        start.Environment["ZTM_CONFIG"] = "";
        start.Environment["ZTM_DATA_DIR"] = "";
        start.Environment["DOTNET_NOLOGO"] = "1";
        _process = new Process { StartInfo = start, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.Exited += (_, _) => _exited.TrySetResult(_process.ExitCode);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Root { get; }

    public string DataDir { get; }

    public int Pid => _process.Id;

    /// <summary>The exit code once the process has exited (on its own or killed), else null.</summary>
    public int? ExitCode => _exited.Task.IsCompleted ? _exited.Task.Result : null;

    /// <summary>Where the harness calls the control plane's API (through a forwarder when it runs in a namespace).</summary>
    public Uri Address { get; private set; } = null!;

    /// <summary>Where sidecars started beside it dial it: <see cref="Address"/>, or its address inside its namespace.</summary>
    public Uri SidecarAddress { get; private set; } = null!;

    /// <summary>"svid issued" log lines seen so far: the server's own count, to cross-check the client's.</summary>
    public long IssuedLines => Interlocked.Read(ref _issuedLines);

    public long RefusedLines => Interlocked.Read(ref _refusedLines);

    public TrustBundle Bundle => TrustBundle.FromPem(SpiffeId.DefaultTrustDomain, File.ReadAllText(Path.Combine(DataDir, "bundle.pem")));

    public X509Certificate2 OperatorCertificate =>
        Pem.LoadCertificateWithKey(Path.Combine(DataDir, "operator", "operator.crt"), Path.Combine(DataDir, "operator", "operator.key"));

    /// <summary>CPU time the control plane has used so far (user + system), read from the OS by PID.</summary>
    public TimeSpan CpuTime
    {
        get
        {
            _process.Refresh();
            return _process.TotalProcessorTime;
        }
    }

    /// <param name="netns">Run it inside this network namespace (the L4 target's), reached through <see cref="CaptureNamespace.Forward"/>.</param>
    /// <param name="extraArgs">More ztm-controlplane flags (<c>--l4-mode on</c>).</param>
    public static async Task<ControlPlaneProcess> StartAsync(string dll, TimeSpan timeout, string tempPrefix = "ztm-signing-load-", CaptureNamespace? netns = null, params string[] extraArgs)
    {
        var root = Directory.CreateTempSubdirectory(tempPrefix).FullName;
        var process = new ControlPlaneProcess(dll, root, netns, extraArgs);
        try
        {
            var winner = await Task.WhenAny(process._listening.Task, process._exited.Task, Task.Delay(timeout));
            if (winner != process._listening.Task)
            {
                var why = winner == process._exited.Task ? $"it exited with code {process._exited.Task.Result}" : $"no 'listening on' line within {timeout.TotalSeconds}s";
                throw new InvalidOperationException($"ztm-controlplane did not start: {why}. Output:\n{process.Output}");
            }
            var line = await process._listening.Task;
            process.SidecarAddress = new Uri(line[line.IndexOf("https://", StringComparison.Ordinal)..].Trim());
            process.Address = netns is null ? process.SidecarAddress : netns.Forward(process.SidecarAddress);
            return process;
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    public string Output
    {
        get
        {
            lock (_gate)
            {
                return string.Join('\n', _lastLines);
            }
        }
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }
        if (line.Contains("svid issued ", StringComparison.Ordinal))
        {
            Interlocked.Increment(ref _issuedLines);
            return;
        }
        if (line.Contains("svid refused ", StringComparison.Ordinal))
        {
            Interlocked.Increment(ref _refusedLines);
            return;
        }
        lock (_gate)
        {
            _lastLines.Enqueue(line);
            if (_lastLines.Count > KeptLines)
            {
                _lastLines.Dequeue();
            }
        }
        if (line.Contains(ListeningPrefix, StringComparison.Ordinal))
        {
            _listening.TrySetResult(line);
        }
    }

    /// <summary>SIGTERM to this PID, then a kill of this PID after <paramref name="grace"/>.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (_process.HasExited)
        {
            return;
        }
        using (var term = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await term.WaitForExitAsync();
        }
        if (await Task.WhenAny(_exited.Task, Task.Delay(grace)) != _exited.Task)
        {
            _process.Kill(entireProcessTree: true);
        }
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(10));
        _process.Dispose();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // the OS cleans temp
        }
    }
}
