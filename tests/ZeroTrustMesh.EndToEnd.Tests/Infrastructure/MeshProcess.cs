using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using Xunit.Abstractions;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>
/// One real executable run as a child process: its output is collected line by line (and mirrored to
/// the test output) so a test can wait for a line as its signal, with a timeout, instead of sleeping.
/// </summary>
internal sealed class MeshProcess : IAsyncDisposable
{
    // Generous: CI runs the whole suite on 2 cores, and a process start there can take seconds.
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly Lock _gate = new();
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Found)> _waiters = [];
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ITestOutputHelper? _output;

    /// <param name="program">The dll to run with <c>dotnet</c>, or (<paramref name="native"/>) an executable to run as it is.</param>
    private MeshProcess(string name, string program, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment, ITestOutputHelper? output, string? netns, bool native = false)
    {
        Name = name;
        _output = output;
        var start = new ProcessStartInfo(native ? program : netns is null ? "dotnet" : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        if (netns is not null)
        {
            // ip netns exec replaces itself with the command: the PID is the executable's.
            foreach (var arg in new[] { "netns", "exec", netns, "dotnet" })
            {
                start.ArgumentList.Add(arg);
            }
        }
        if (!native)
        {
            start.ArgumentList.Add(program);
        }
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }
        _process = new Process { StartInfo = start, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        // Exited can be raised before the last lines are read: WaitForExitAsync also waits for the output to reach
        // its end, so a line printed just before exiting (an error, then exit code 2) is seen before the exit is.
        _process.Exited += async (_, _) =>
        {
            var code = _process.ExitCode;
            try
            {
                await _process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // Disposed meanwhile: nobody reads its lines any more.
            }
            _exited.TrySetResult(code);
        };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Name { get; }

    public int Pid => _process.Id;

    public Task<int> Exited => _exited.Task;

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_gate)
            {
                return [.. _lines];
            }
        }
    }

    /// <summary>How many lines were printed so far: a mark to wait for a line printed after it.</summary>
    public int LineCount
    {
        get
        {
            lock (_gate)
            {
                return _lines.Count;
            }
        }
    }

    /// <param name="netns">Run inside this network namespace (<c>ip netns exec</c>).</param>
    public static MeshProcess Start(string name, string dll, IEnumerable<string> args, ITestOutputHelper? output, IReadOnlyDictionary<string, string>? environment = null, string? netns = null) =>
        new(name, dll, args, environment, output, netns);

    /// <summary>Runs an executable that is not one of ours (a tool such as <c>prometheus</c>), found on PATH.</summary>
    public static MeshProcess StartProgram(string name, string program, IEnumerable<string> args, ITestOutputHelper? output) =>
        new(name, program, args, null, output, netns: null, native: true);

    /// <summary>The first line (already seen or still to come) that contains <paramref name="text"/>.</summary>
    public Task<string> WaitForLineAsync(string text, TimeSpan? timeout = null) => WaitForLineAsync(l => l.Contains(text, StringComparison.Ordinal), text, timeout);

    /// <param name="after">Only lines after this many (a <see cref="LineCount"/> taken earlier) count.</param>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, string description, TimeSpan? timeout = null, int after = 0)
    {
        var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (_lines.Skip(after).FirstOrDefault(match) is { } seen)
            {
                return seen;
            }
            _waiters.Add((match, found));
        }
        var limit = timeout ?? DefaultTimeout;
        var winner = await Task.WhenAny(found.Task, _exited.Task, Task.Delay(limit));
        // Both completions run their continuations on the thread pool, so WhenAny can see the exit first even though
        // the line was matched before it (a line printed just before exiting): the line wins whenever it was found.
        if (winner == found.Task || found.Task.IsCompleted)
        {
            return await found.Task;
        }
        var why = winner == _exited.Task ? $"it exited with code {_exited.Task.Result}" : $"not within {limit.TotalSeconds}s";
        throw new TimeoutException($"{Name} printed no line matching '{description}': {why}. Output:\n{string.Join('\n', Lines)}");
    }

    /// <summary>Counts lines already printed that contain <paramref name="text"/>.</summary>
    public int CountLines(string text) => Lines.Count(l => l.Contains(text, StringComparison.Ordinal));

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }
        try
        {
            _output?.WriteLine($"[{Name}] {line}");
        }
        catch (InvalidOperationException)
        {
            // the test has finished; its output helper is closed
        }
        lock (_gate)
        {
            _lines.Add(line);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Match(line))
                {
                    _waiters[i].Found.TrySetResult(line);
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    /// <summary>Stops the process like an orchestrator would: SIGTERM, then a kill after a grace period.</summary>
    public async Task StopAsync(TimeSpan? grace = null)
    {
        if (_process.HasExited)
        {
            return;
        }
        using (var term = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await term.WaitForExitAsync();
        }
        if (await Task.WhenAny(_exited.Task, Task.Delay(grace ?? TimeSpan.FromSeconds(10))) != _exited.Task)
        {
            _process.Kill(entireProcessTree: true);
        }
        await _process.WaitForExitAsync();
    }

    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
