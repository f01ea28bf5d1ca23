using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>Runs a test only where Debian's <c>prometheus</c> package (<c>prometheus</c> and <c>promtool</c>) is installed.</summary>
internal sealed class PrometheusFactAttribute : FactAttribute
{
    public PrometheusFactAttribute()
    {
        var missing = new[] { "prometheus", "promtool" }.Where(c => Executable.Find(c) is null).ToList();
        if (missing.Count > 0)
        {
            Skip = $"needs {string.Join(" and ", missing)}, not found on PATH (apt-get install --no-install-recommends prometheus, or scripts/install-deps.sh as root)";
        }
    }
}

/// <summary>
/// The real <c>prometheus</c> binary on a free loopback port, with its own configuration and storage in a directory of
/// the test's, scraping the given targets every second and evaluating the given rule files every second; and the parts
/// of its HTTP API a test needs.
/// </summary>
internal sealed class PrometheusServer : IAsyncDisposable
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);

    private readonly MeshProcess _process;
    private readonly HttpClient _http;

    private PrometheusServer(MeshProcess process, Uri address)
    {
        _process = process;
        _http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };
    }

    /// <summary>Every target, as job → <c>host:port</c>s (path <c>/metrics</c>).</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> Targets { get; private init; } = new Dictionary<string, IReadOnlyList<string>>();

    /// <param name="directory">Configuration and TSDB go here.</param>
    public static async Task<PrometheusServer> StartAsync(string directory, IReadOnlyDictionary<string, IReadOnlyList<string>> targets, IEnumerable<string> ruleFiles, Xunit.Abstractions.ITestOutputHelper output)
    {
        Directory.CreateDirectory(directory);
        var config = new StringBuilder();
        config.AppendLine("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s");
        config.AppendLine("rule_files:");
        foreach (var file in ruleFiles)
        {
            config.AppendLine(CultureInfo.InvariantCulture, $"  - {JsonSerializer.Serialize(file)}");
        }
        config.AppendLine("scrape_configs:");
        foreach (var (job, addresses) in targets)
        {
            config.AppendLine(CultureInfo.InvariantCulture, $"  - job_name: {job}\n    static_configs:\n      - targets: [{string.Join(", ", addresses.Select(a => JsonSerializer.Serialize(a)))}]");
        }
        var configPath = Path.Combine(directory, "prometheus.yml");
        await File.WriteAllTextAsync(configPath, config.ToString());

        var port = FreePort();
        var process = MeshProcess.StartProgram("prometheus", "prometheus",
            [$"--config.file={configPath}", $"--storage.tsdb.path={Path.Combine(directory, "data")}", $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            output);
        var server = new PrometheusServer(process, new Uri($"http://127.0.0.1:{port}")) { Targets = targets };
        try
        {
            await server.WaitForAsync("Prometheus to be ready", async () => (await server.TryGetAsync("/-/ready")) is not null);
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
        return server;
    }

    /// <summary>Waits until every target is up and has been scraped by a scrape that began after <paramref name="after"/>.</summary>
    public Task WaitForScrapesAsync(DateTimeOffset after) =>
        WaitForAsync($"every target up and scraped after {after:O}", async () =>
        {
            var targets = (await GetDataAsync("/api/v1/targets?state=active")).GetProperty("activeTargets").EnumerateArray().ToList();
            return targets.Count == Targets.Values.Sum(t => t.Count)
                && targets.All(t => t.GetProperty("health").GetString() == "up" && t.GetProperty("lastScrape").GetDateTimeOffset() > after);
        });

    /// <summary>Waits until every rule of every loaded group has been evaluated after <paramref name="after"/>; returns the rules.</summary>
    public async Task<IReadOnlyList<JsonElement>> WaitForRuleEvaluationsAsync(DateTimeOffset after)
    {
        IReadOnlyList<JsonElement> rules = [];
        await WaitForAsync($"every rule evaluated after {after:O}", async () =>
        {
            rules = [.. (await GetDataAsync("/api/v1/rules")).GetProperty("groups").EnumerateArray().SelectMany(g => g.GetProperty("rules").EnumerateArray())];
            return rules.Count > 0 && rules.All(r => r.GetProperty("lastEvaluation").GetDateTimeOffset() > after);
        });
        return rules;
    }

    /// <summary>An instant query at the current time: the samples' label sets and values (a scalar is one sample without labels).</summary>
    public async Task<IReadOnlyList<(JsonElement Labels, double Value)>> QueryAsync(string promQl)
    {
        var data = await GetDataAsync("/api/v1/query?query=" + Uri.EscapeDataString(promQl));
        var result = data.GetProperty("result");
        return data.GetProperty("resultType").GetString() switch
        {
            "vector" => [.. result.EnumerateArray().Select(s => (s.GetProperty("metric"), Value(s.GetProperty("value"))))],
            "scalar" => [(default, Value(result))],
            var other => throw new InvalidOperationException($"'{promQl}' returned a {other}, not an instant vector or scalar"),
        };
    }

    /// <summary>The label sets of the series <paramref name="selector"/> selects over the last 5 minutes (the series API, as Grafana's label_values uses it).</summary>
    public async Task<IReadOnlyList<JsonElement>> SeriesAsync(string selector)
    {
        var start = DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        return [.. (await GetDataAsync($"/api/v1/series?match[]={Uri.EscapeDataString(selector)}&start={start}")).EnumerateArray()];
    }

    private static double Value(JsonElement pair) => double.Parse(pair[1].GetString()!, CultureInfo.InvariantCulture);

    private async Task<JsonElement> GetDataAsync(string path)
    {
        using var response = await _http.GetAsync(new Uri(path, UriKind.Relative));
        var body = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"Prometheus answered {(int)response.StatusCode} to {path}: {body}");
        }
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("data").Clone();
    }

    private async Task<string?> TryGetAsync(string path)
    {
        try
        {
            using var response = await _http.GetAsync(new Uri(path, UriKind.Relative));
            return response.IsSuccessStatusCode ? await response.Content.ReadAsStringAsync() : null;
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>Polls <paramref name="condition"/> until it holds, the process exits, or the timeout passes.</summary>
    private async Task WaitForAsync(string what, Func<Task<bool>> condition)
    {
        var timeout = Stopwatch.StartNew();
        while (!await condition())
        {
            if (_process.Exited.IsCompleted)
            {
                throw new InvalidOperationException($"prometheus exited with code {_process.Exited.Result} while waiting for {what}:\n{string.Join('\n', _process.Lines)}");
            }
            if (timeout.Elapsed > MeshProcess.DefaultTimeout)
            {
                throw new TimeoutException($"no {what} within {MeshProcess.DefaultTimeout.TotalSeconds}s");
            }
            await Task.WhenAny(_process.Exited, Task.Delay(Poll));
        }
    }

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _process.StopAsync(TimeSpan.FromSeconds(5));
        await _process.DisposeAsync();
    }
}

/// <summary><c>promtool</c>, run to completion.</summary>
internal static class Promtool
{
    /// <param name="stdin">Written to its standard input, then closed.</param>
    public static async Task<(int ExitCode, string Output)> RunAsync(string? stdin, params string[] args)
    {
        var start = new ProcessStartInfo("promtool") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
        }
        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(MeshProcess.DefaultTimeout);
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, (await stdout) + (await stderr));
    }
}
