using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// A child process of the data-plane harness (demo app, sidecar, haproxy): started with its own environment,
/// its output read line by line until the start-up lines it is waited for are seen, then drained without parsing
/// (a sidecar prints one access-log line per request, and a full pipe would stall it). Stopped by its PID.
/// Memory and CPU are read from <c>/proc/&lt;pid&gt;</c>.
/// </summary>
internal sealed class LoadProcess : IAsyncDisposable
{
    private const int KeptLines = 100;
    private static readonly double ClockTicksPerSecond = ReadClockTicks();

    private readonly Process _process;
    private readonly Lock _gate = new();
    private readonly Queue<string> _lastLines = new();
    private readonly List<(string Text, TaskCompletionSource<string> Found)> _waiters = [];
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task[] _readers;
    private volatile bool _quiet;

    private LoadProcess(string name, string fileName, IEnumerable<string> args, IReadOnlyDictionary<string, string> environment, bool runsOnDotnet)
    {
        Name = name;
        RunsOnDotnet = runsOnDotnet;
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }
        _process = new Process { StartInfo = start, EnableRaisingEvents = true };
        _process.Exited += (_, _) => _exited.TrySetResult(_process.ExitCode);
        StartedAt = Stopwatch.GetTimestamp();
        _process.Start();
        _readers = [ReadAsync(_process.StandardOutput), ReadAsync(_process.StandardError)];
    }

    public string Name { get; }

    public int Pid => _process.Id;

    public long StartedAt { get; }

    /// <summary>A .dll run with <c>dotnet</c> (JIT): its executable is the runtime's host, not a build of its own.</summary>
    public bool RunsOnDotnet { get; }

    public bool HasExited => _exited.Task.IsCompleted;

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

    /// <summary>Runs <paramref name="fileName"/>; a path ending in <c>.dll</c> is run with <c>dotnet</c>; inside <paramref name="netns"/> when given.</summary>
    public static LoadProcess Start(string name, string fileName, IEnumerable<string> args, IReadOnlyDictionary<string, string> environment, CaptureNamespace? netns = null)
    {
        var dotnet = fileName.EndsWith(".dll", StringComparison.OrdinalIgnoreCase);
        var (file, arguments) = dotnet ? ("dotnet", (IEnumerable<string>)[fileName, .. args]) : (fileName, args);
        if (netns is not null)
        {
            (file, arguments) = netns.Exec(file, arguments);
        }
        return new LoadProcess(name, file, arguments, environment, dotnet || fileName == "dotnet");
    }

    /// <summary>The first line containing <paramref name="text"/>, seen already or still to come; milliseconds since exec with it.</summary>
    public async Task<(string Line, double MsSinceStart)> WaitForLineAsync(string text, TimeSpan timeout)
    {
        var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            var seen = _lastLines.FirstOrDefault(l => l.Contains(text, StringComparison.Ordinal));
            if (seen is not null)
            {
                found.TrySetResult(seen);
            }
            else
            {
                _waiters.Add((text, found));
            }
        }
        var winner = await Task.WhenAny(found.Task, _exited.Task, Task.Delay(timeout));
        if (winner != found.Task)
        {
            var why = winner == _exited.Task ? $"it exited with code {_exited.Task.Result}" : $"not within {timeout.TotalSeconds}s";
            throw new InvalidOperationException($"{Name} printed no line containing '{text}': {why}. Output:\n{Output}");
        }
        var line = await found.Task;
        return (line, Stopwatch.GetElapsedTime(StartedAt).TotalMilliseconds);
    }

    /// <summary>From now on the output is drained without being read as lines.</summary>
    public void Quiet() => _quiet = true;

    private async Task ReadAsync(StreamReader reader)
    {
        try
        {
            while (!_quiet && await reader.ReadLineAsync() is { } line)
            {
                lock (_gate)
                {
                    _lastLines.Enqueue(line);
                    if (_lastLines.Count > KeptLines)
                    {
                        _lastLines.Dequeue();
                    }
                    for (var i = _waiters.Count - 1; i >= 0; i--)
                    {
                        if (line.Contains(_waiters[i].Text, StringComparison.Ordinal))
                        {
                            _waiters[i].Found.TrySetResult(line);
                            _waiters.RemoveAt(i);
                        }
                    }
                }
            }
            await reader.BaseStream.CopyToAsync(Stream.Null);
        }
        catch (IOException)
        {
            // the process went away
        }
        catch (ObjectDisposedException)
        {
            // disposed while reading
        }
    }

    /// <summary>Resident set size now and its high-water mark, in MiB (<c>VmRSS</c>, <c>VmHWM</c>).</summary>
    public (double RssMb, double PeakRssMb) Memory() => Memory(Pid);

    /// <summary>The same for any process, by PID (the control plane is not started as a <see cref="LoadProcess"/>).</summary>
    public static (double RssMb, double PeakRssMb) Memory(int pid)
    {
        var status = StatusMb(pid);
        return (status.GetValueOrDefault("VmRSS", double.NaN), status.GetValueOrDefault("VmHWM", double.NaN));
    }

    /// <summary>
    /// <c>VmRSS</c> and its parts, in MiB: <c>RssAnon</c> (heap, stacks, relocated data: this process's own),
    /// <c>RssFile</c> (mapped pages of the executable and libraries: page cache, shareable) and <c>RssShmem</c> (shared
    /// memory: the JIT's double-mapped code, haproxy's shared segments; 0 for a NativeAOT process).
    /// </summary>
    public (double RssMb, double RssAnonMb, double RssFileMb, double RssShmemMb) MemorySplit()
    {
        var status = StatusMb(Pid);
        double Field(string name) => status.GetValueOrDefault(name, double.NaN);
        return (Field("VmRSS"), Field("RssAnon"), Field("RssFile"), Field("RssShmem"));
    }

    /// <summary>Every <c>/proc/pid/status</c> line given in kB (<c>VmRSS:    36040 kB</c>), by name, in MiB.</summary>
    private static Dictionary<string, double> StatusMb(int pid)
    {
        var fields = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            var parts = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 3 && parts[2] == "kB" && parts[0].EndsWith(':'))
            {
                fields[parts[0][..^1]] = double.Parse(parts[1], CultureInfo.InvariantCulture) / 1024;
            }
        }
        return fields;
    }

    /// <summary>Size of the running executable (<c>/proc/pid/exe</c>) in MiB; NaN for a .dll run with dotnet.</summary>
    public double BinaryMb()
    {
        try
        {
            return !RunsOnDotnet && File.ResolveLinkTarget($"/proc/{Pid}/exe", returnFinalTarget: true) is { } exe
                ? new FileInfo(exe.FullName).Length / 1048576.0
                : double.NaN;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return double.NaN;
        }
    }

    /// <summary>Resets <c>VmHWM</c> to the current RSS (<c>echo 5 &gt; /proc/pid/clear_refs</c>), so the next peak is this phase's.</summary>
    public bool ResetPeak()
    {
        try
        {
            File.WriteAllText($"/proc/{Pid}/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>User + system CPU of all the process's threads, from fields 14 and 15 of <c>/proc/pid/stat</c>.</summary>
    public TimeSpan CpuTime()
    {
        var stat = File.ReadAllText($"/proc/{Pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // fields[0] is field 3 (state): utime (14) and stime (15) are fields[11] and fields[12].
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds(ticks / ClockTicksPerSecond);
    }

    private static double ReadClockTicks()
    {
        try
        {
            using var getconf = Process.Start(new ProcessStartInfo("getconf", "CLK_TCK") { RedirectStandardOutput = true, UseShellExecute = false })!;
            var text = getconf.StandardOutput.ReadToEnd().Trim();
            getconf.WaitForExit();
            return double.TryParse(text, CultureInfo.InvariantCulture, out var ticks) && ticks > 0 ? ticks : 100;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return 100; // USER_HZ on every Linux build that matters
        }
    }

    /// <summary>SIGTERM to this PID, then a kill of this PID after <paramref name="grace"/>.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (HasExited)
        {
            return;
        }
        using (var term = Process.Start("kill", ["-TERM", Pid.ToString(CultureInfo.InvariantCulture)]))
        {
            await term.WaitForExitAsync();
        }
        if (await Task.WhenAny(_exited.Task, Task.Delay(grace)) != _exited.Task)
        {
            _process.Kill();
        }
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(5));
        await Task.WhenAny(Task.WhenAll(_readers), Task.Delay(TimeSpan.FromSeconds(2)));
        _process.Dispose();
    }
}
