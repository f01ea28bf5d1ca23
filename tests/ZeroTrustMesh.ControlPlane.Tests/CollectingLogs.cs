using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace ZeroTrustMesh.ControlPlane.Tests;

/// <summary>Every formatted log message, for tests that check what the control plane says.</summary>
internal sealed class CollectingLogs : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly Lock _gate = new();
    private TaskCompletionSource _logged = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public IReadOnlyList<string> Lines => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    /// <summary>Completes once <paramref name="count"/> lines match <paramref name="match"/>; a <see cref="TimeoutException"/> lists the lines seen.</summary>
    public async Task WaitForAsync(Func<string, bool> match, int count, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (true)
        {
            Task logged;
            lock (_gate)
            {
                logged = _logged.Task;
            }
            if (_lines.Count(match) >= count)
            {
                return;
            }
            try
            {
                await logged.WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"{count} matching log line(s) did not come within {timeout}; lines:\n{string.Join("\n", _lines)}");
            }
        }
    }

    private void Add(string line)
    {
        _lines.Enqueue(line);
        TaskCompletionSource logged;
        lock (_gate)
        {
            logged = _logged;
            _logged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        logged.SetResult();
    }

    public void Dispose()
    {
    }

    private sealed class Logger(CollectingLogs logs) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            logs.Add(formatter(state, exception));
    }
}
