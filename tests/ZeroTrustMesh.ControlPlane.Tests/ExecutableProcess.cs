using System.Diagnostics;
using System.Reflection;
using System.Text;
using Xunit.Abstractions;

namespace ZeroTrustMesh.ControlPlane.Tests;

/// <summary>
/// One of the mesh's executables run with <c>dotnet</c> as a child process: stdout and stderr collected line by line
/// (and mirrored to the test output), so a test waits for a line as its signal instead of sleeping. Killed on disposal.
/// </summary>
internal sealed class ExecutableProcess : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly Lock _gate = new();
    private readonly ITestOutputHelper? _output;
    private readonly string _name;
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _line = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ExecutableProcess(string name, string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string> environment, ITestOutputHelper? output)
    {
        _name = name;
        _output = output;
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        start.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }
        _process = new Process { StartInfo = start, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.Exited += async (_, _) =>
        {
            var code = _process.ExitCode;
            try
            {
                await _process.WaitForExitAsync(); // the last lines are read before the exit is reported
            }
            catch (InvalidOperationException)
            {
            }
            _exited.TrySetResult(code);
        };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The repository this test assembly was built from.</summary>
    public static string RepoRoot => Metadata("RepoRoot");

    /// <summary>ztm-controlplane, next to this test assembly (a referenced project).</summary>
    public static string ControlPlane => Path.Combine(AppContext.BaseDirectory, "ztm-controlplane.dll");

    /// <summary>ztm-sidecar, built by its project (referenced for the build only: the two sides never share an assembly).</summary>
    public static string Sidecar
    {
        get
        {
            var path = Path.Combine(RepoRoot, "sidecar", "ZeroTrustMesh.Sidecar", "bin", Metadata("Configuration"), "net10.0", "ztm-sidecar.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException($"ztm-sidecar is not built at {path}");
        }
    }

    /// <summary>ztmctl, built by its project (referenced for the build only).</summary>
    public static string Ztmctl
    {
        get
        {
            var path = Path.Combine(RepoRoot, "control-plane", "ZeroTrustMesh.Cli", "bin", Metadata("Configuration"), "net10.0", "ztmctl.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException($"ztmctl is not built at {path}");
        }
    }

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

    public Task<int> Exited => _exited.Task;

    public static ExecutableProcess Start(string name, string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string> environment, ITestOutputHelper? output) =>
        new(name, dll, args, environment, output);

    /// <summary>The first line that <paramref name="match"/>es, once printed; fails when the process exits or the timeout passes first.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, string what)
    {
        using var deadline = new CancellationTokenSource(Timeout);
        while (true)
        {
            Task next;
            lock (_gate)
            {
                if (_lines.FirstOrDefault(match) is { } line)
                {
                    return line;
                }
                next = _line.Task;
            }
            if (_exited.Task.IsCompleted)
            {
                throw new InvalidOperationException($"{_name} exited ({_exited.Task.Result}) without printing {what}; output:\n{string.Join("\n", Lines)}");
            }
            try
            {
                await Task.WhenAny(next, _exited.Task).WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"{_name} did not print {what} within {Timeout}; output:\n{string.Join("\n", Lines)}");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        await _process.WaitForExitAsync();
        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }
        TaskCompletionSource signalled;
        lock (_gate)
        {
            _lines.Add(line);
            signalled = _line;
            _line = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        signalled.SetResult();
        try
        {
            _output?.WriteLine($"[{_name}] {line}");
        }
        catch (InvalidOperationException)
        {
            // The test has ended; its output is closed.
        }
    }

    private static string Metadata(string key) =>
        typeof(ExecutableProcess).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value!;
}
