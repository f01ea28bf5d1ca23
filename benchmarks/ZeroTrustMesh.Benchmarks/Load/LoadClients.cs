using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>What a load client measured in one run against one target.</summary>
/// <param name="Sent">Every request of the run, its unmeasured warm-up included: what the proxies' CPU over the run is divided by.</param>
internal sealed record ClientResult(long Requests, long Errors, double Seconds, double PerSecond, double P50Ms, double P90Ms, double P99Ms, double SendLagP99Ms, long Sent)
{
    /// <summary>Mean latency, where the client gives no percentiles (h2load).</summary>
    public double MeanMs { get; init; } = double.NaN;

    /// <summary>What the errors were, counted by kind (an exception's type and message, a status, or the client's own category), so a run with errors says why.</summary>
    public IReadOnlyDictionary<string, long> ErrorsByKind { get; init; } = new Dictionary<string, long>();

    /// <summary>The kind an exception counts as: its type and message, and those of the innermost exception that caused it.</summary>
    public static string KindOf(Exception e)
    {
        var inner = e;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }
        var kind = inner == e ? $"{e.GetType().Name}: {e.Message}" : $"{e.GetType().Name}: {e.Message} ({inner.GetType().Name}: {inner.Message})";
        return kind.Length <= 200 ? kind : kind[..200] + "…";
    }
}

/// <summary>
/// The load clients of <c>dataplane-load</c>: closed-loop capacity with <c>wrk</c> (or, without it, an in-process
/// closed loop on HttpClient) and an open-loop fixed-rate client on HttpClient.
/// </summary>
internal static partial class LoadClients
{
    /// <summary><c>wrk -t&lt;threads&gt; -c&lt;connections&gt; -d&lt;s&gt; --latency</c>, killed by its PID if it overruns.</summary>
    /// <param name="netns">Run wrk inside this network namespace (the L4 target's client), else here.</param>
    public static async Task<ClientResult> WrkAsync(Uri url, string? host, int connections, int threads, TimeSpan duration, CancellationToken cancellation, CaptureNamespace? netns = null)
    {
        var start = new ProcessStartInfo(netns is null ? "wrk" : "ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in netns is null ? [] : new[] { "netns", "exec", netns.Name, "wrk" })
        {
            start.ArgumentList.Add(arg);
        }
        foreach (var arg in new[] { $"-t{threads}", $"-c{connections}", $"-d{(int)Math.Ceiling(duration.TotalSeconds)}s", "--latency", "--timeout", "5s" })
        {
            start.ArgumentList.Add(arg);
        }
        if (host is not null)
        {
            start.ArgumentList.Add("-H");
            start.ArgumentList.Add($"Host: {host}");
        }
        start.ArgumentList.Add(url.ToString());
        using var wrk = Process.Start(start)!;
        var stdout = wrk.StandardOutput.ReadToEndAsync(cancellation);
        var stderr = wrk.StandardError.ReadToEndAsync(cancellation);
        using (var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellation))
        {
            bound.CancelAfter(duration + TimeSpan.FromSeconds(20));
            try
            {
                await wrk.WaitForExitAsync(bound.Token);
            }
            catch (OperationCanceledException)
            {
                wrk.Kill();
                throw new TimeoutException($"wrk (pid {wrk.Id}) did not finish within {duration.TotalSeconds + 20}s");
            }
        }
        var text = await stdout + await stderr;
        var requests = Match(RequestsLine(), text, "requests in");
        var seconds = Seconds(RequestsLine().Match(text).Groups[2].Value);
        var kinds = new Dictionary<string, long>();
        if (NonSuccessLine().Match(text) is { Success: true } non2xx)
        {
            kinds["wrk: non-2xx or 3xx responses"] = long.Parse(non2xx.Groups[1].Value, CultureInfo.InvariantCulture);
        }
        if (SocketErrorsLine().Match(text) is { Success: true } socket)
        {
            foreach (var (group, what) in new[] { (1, "connect"), (2, "read"), (3, "write"), (4, "timeout") })
            {
                kinds[$"wrk: socket {what} errors"] = long.Parse(socket.Groups[group].Value, CultureInfo.InvariantCulture);
            }
        }
        kinds = kinds.Where(k => k.Value > 0).ToDictionary();
        var errors = kinds.Values.Sum();
        return new ClientResult(requests, errors, seconds, double.Parse(RequestsPerSecLine().Match(text).Groups[1].Value, CultureInfo.InvariantCulture),
            Percentile(text, "50%"), Percentile(text, "90%"), Percentile(text, "99%"), double.NaN, requests + errors) { ErrorsByKind = kinds };

        static long Match(Regex regex, string text, string what) => regex.Match(text) is { Success: true } m
            ? long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)
            : throw new InvalidOperationException($"wrk printed no '{what}' line:\n{text}");
    }

    private static double Percentile(string text, string label)
    {
        var m = Regex.Match(text, $@"^\s+{Regex.Escape(label)}\s+([\d.]+)(us|ms|s)\s*$", RegexOptions.Multiline, TimeSpan.FromSeconds(1));
        return m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) * m.Groups[2].Value switch { "us" => 0.001, "s" => 1000, _ => 1 } : double.NaN;
    }

    private static double Seconds(string value) =>
        value.EndsWith("ms", StringComparison.Ordinal) ? double.Parse(value[..^2], CultureInfo.InvariantCulture) / 1000
        : value.EndsWith('m') ? double.Parse(value[..^1], CultureInfo.InvariantCulture) * 60
        : double.Parse(value.TrimEnd('s'), CultureInfo.InvariantCulture);

    [GeneratedRegex(@"(\d+) requests in ([\d.]+\w+),")]
    private static partial Regex RequestsLine();

    [GeneratedRegex(@"Requests/sec:\s+([\d.]+)")]
    private static partial Regex RequestsPerSecLine();

    [GeneratedRegex(@"Non-2xx or 3xx responses: (\d+)")]
    private static partial Regex NonSuccessLine();

    [GeneratedRegex(@"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")]
    private static partial Regex SocketErrorsLine();

    /// <summary>An HttpClient for one target: HTTP/1.1 keep-alive, no proxy, connections kept across runs.</summary>
    /// <param name="connect">How a connection is opened, when not with a socket of this process's namespace.</param>
    public static HttpClient Client(int maxConnections, Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>>? connect = null) => new(new SocketsHttpHandler
    {
        ConnectCallback = connect,
        UseProxy = false,
        AllowAutoRedirect = false,
        MaxConnectionsPerServer = maxConnections,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(10),
        PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        ConnectTimeout = TimeSpan.FromSeconds(5),
    })
    {
        Timeout = TimeSpan.FromSeconds(10),
        DefaultRequestVersion = HttpVersion.Version11,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
    };

    /// <summary>One request: a GET, or a POST of <paramref name="json"/> as <c>application/json</c>; true for a 2xx with its body read.</summary>
    private static async Task<bool> OnceAsync(HttpClient client, Uri url, string? host, CancellationToken cancellation, byte[]? json = null)
    {
        using var request = new HttpRequestMessage(json is null ? HttpMethod.Get : HttpMethod.Post, url);
        if (host is not null)
        {
            request.Headers.Host = host;
        }
        if (json is not null)
        {
            request.Content = new ByteArrayContent(json) { Headers = { ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json") } };
        }
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellation);
        return response.IsSuccessStatusCode;
    }

    private const string NotSuccess = "answered with a status other than 2xx";

    /// <summary>The in-process closed loop used when wrk is not installed: <paramref name="connections"/> callers, each waiting for its reply.</summary>
    public static Task<ClientResult> ClosedLoopAsync(HttpClient client, Uri url, string? host, int connections, TimeSpan duration, CancellationToken cancellation) =>
        ClosedLoopAsync(connections, duration, token => OnceAsync(client, url, host, token), cancellation);

    /// <summary>
    /// <paramref name="workers"/> loops, each calling <paramref name="once"/> again as soon as it returns, for
    /// <paramref name="duration"/>; a call that returns false or fails counts as an error, not as a latency.
    /// </summary>
    public static async Task<ClientResult> ClosedLoopAsync(int workers, TimeSpan duration, Func<CancellationToken, Task<bool>> once, CancellationToken cancellation)
    {
        var end = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var started = Stopwatch.GetTimestamp();
        var loops = Enumerable.Range(0, workers).Select(_ => Task.Run(async () =>
        {
            var latencies = new List<long>(4096);
            var errors = new Dictionary<string, long>();
            while (Stopwatch.GetTimestamp() < end && !cancellation.IsCancellationRequested)
            {
                var t0 = Stopwatch.GetTimestamp();
                string? error;
                try
                {
                    error = await once(cancellation) ? null : NotSuccess;
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
                {
                    error = ClientResult.KindOf(e);
                }
                if (error is null)
                {
                    latencies.Add(Stopwatch.GetTimestamp() - t0);
                }
                else
                {
                    errors[error] = errors.GetValueOrDefault(error) + 1;
                }
            }
            return (latencies, errors);
        }, cancellation)).ToArray();
        var results = await Task.WhenAll(loops);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var all = results.SelectMany(r => r.latencies).Order().ToArray();
        var kinds = results.SelectMany(r => r.errors).GroupBy(e => e.Key).ToDictionary(g => g.Key, g => g.Sum(e => e.Value));
        var errorCount = kinds.Values.Sum();
        return new ClientResult(all.LongLength, errorCount, seconds, all.LongLength / seconds,
            Ms(At(all, 0.50)), Ms(At(all, 0.90)), Ms(At(all, 0.99)), double.NaN, all.LongLength + errorCount) { ErrorsByKind = kinds };
    }

    /// <summary>
    /// Open loop at a fixed rate: request i is sent at start + i/rate whether or not earlier ones have answered
    /// (a dedicated thread sleeps ~1 ms at a time and sends everything that is due). Latency is from the actual send
    /// to the end of the response body; the send lag (actual − scheduled) is reported so a sender that fell behind is
    /// visible. Requests scheduled in the first <paramref name="warmup"/> are not counted. With <paramref name="json"/>
    /// every request is a POST of that body.
    /// </summary>
    public static async Task<ClientResult> FixedRateAsync(HttpClient client, Uri url, string? host, int rate, TimeSpan warmup, TimeSpan duration, CancellationToken cancellation,
        byte[]? json = null) =>
        (await FixedRateAsync(client, [new RateArm(url, host, json)], rate, warmup, duration, cancellation))[0];

    /// <summary>
    /// The same open loop shared by several requests in turn: request i goes to <paramref name="arms"/>[i % n], so
    /// each arm is sent at rate/n and every arm lives through the same moments of the machine (a collection, a
    /// scheduling stall, another process's burst hits them alike). That is what makes a small difference between two
    /// routes measurable on a shared, noisy host where runs one after the other differ by more than the difference.
    /// One result per arm, in the order given.
    /// </summary>
    public static async Task<ClientResult[]> FixedRateAsync(HttpClient client, IReadOnlyList<RateArm> arms, int rate, TimeSpan warmup, TimeSpan duration,
        CancellationToken cancellation)
    {
        var skip = (int)(warmup.TotalSeconds * rate);
        var total = skip + (int)(duration.TotalSeconds * rate);
        var latency = new long[total];
        var failure = new string?[total];
        var lag = new long[total];
        var pending = new Task[total];
        var interval = (double)Stopwatch.Frequency / rate;
        var start = Stopwatch.GetTimestamp();

        async Task SendAsync(int i, long sent)
        {
            var arm = arms[i % arms.Count];
            try
            {
                if (await OnceAsync(client, arm.Url, arm.Host, cancellation, arm.Json))
                {
                    latency[i] = Stopwatch.GetTimestamp() - sent;
                }
                else
                {
                    failure[i] = NotSuccess;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                failure[i] = ClientResult.KindOf(e);
            }
        }

        var sender = new Thread(() =>
        {
            for (var i = 0; i < total && !cancellation.IsCancellationRequested; i++)
            {
                var due = start + (long)(i * interval);
                while (Stopwatch.GetTimestamp() < due)
                {
                    Thread.Sleep(1);
                }
                var now = Stopwatch.GetTimestamp();
                lag[i] = now - due;
                pending[i] = SendAsync(i, now);
            }
        })
        { IsBackground = true, Name = "fixed-rate sender" };
        sender.Start();
        await Task.Run(sender.Join, cancellation);
        var outstanding = Task.WhenAll(pending.Where(p => p is not null));
        await Task.WhenAny(outstanding, Task.Delay(TimeSpan.FromSeconds(15), cancellation));

        var seconds = duration.TotalSeconds;
        return arms.Select((_, a) =>
        {
            var mine = Enumerable.Range(skip, total - skip).Where(i => i % arms.Count == a).ToArray();
            var ok = mine.Select(i => latency[i]).Where(l => l > 0).Order().ToArray();
            var kinds = mine.Where(i => latency[i] <= 0)
                .GroupBy(i => failure[i] ?? "not sent, or no answer within 15 s of the last send").ToDictionary(g => g.Key, g => g.LongCount());
            var lags = mine.Select(i => lag[i]).Order().ToArray();
            return new ClientResult(ok.LongLength, mine.LongLength - ok.LongLength, seconds, ok.LongLength / seconds,
                Ms(At(ok, 0.50)), Ms(At(ok, 0.90)), Ms(At(ok, 0.99)), Ms(At(lags, 0.99)),
                Enumerable.Range(0, total).Count(i => i % arms.Count == a && pending[i] is not null)) { ErrorsByKind = kinds };
        }).ToArray();
    }

    /// <summary>Waits until <paramref name="url"/> answers 2xx (a proxy may need a moment for its upstream or the registry).</summary>
    public static async Task WaitUntilServingAsync(HttpClient client, Uri url, string? host, TimeSpan timeout, string what)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        string last = "no attempt";
        while (Stopwatch.GetTimestamp() < deadline)
        {
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, url);
                if (host is not null)
                {
                    request.Headers.Host = host;
                }
                using var response = await client.SendAsync(request);
                var body = await response.Content.ReadAsByteArrayAsync();
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
                last = $"HTTP {(int)response.StatusCode}: {System.Text.Encoding.UTF8.GetString(body.AsSpan(0, Math.Min(body.Length, 200)))}";
            }
            catch (HttpRequestException e)
            {
                last = e.Message;
            }
            await Task.Delay(200);
        }
        throw new InvalidOperationException($"{what} at {url} did not answer 2xx within {timeout.TotalSeconds}s: {last}");
    }

    private static long At(long[] sorted, double q) => sorted.Length == 0 ? -1 : sorted[Math.Max(0, (int)Math.Ceiling(q * sorted.Length) - 1)];

    private static double Ms(long ticks) => ticks < 0 ? double.NaN : ticks * 1000.0 / Stopwatch.Frequency;
}

/// <summary>One of the requests an open loop sends in turn: where to, the Host header, and the JSON body to POST (null: a GET).</summary>
internal sealed record RateArm(Uri Url, string? Host, byte[]? Json);
