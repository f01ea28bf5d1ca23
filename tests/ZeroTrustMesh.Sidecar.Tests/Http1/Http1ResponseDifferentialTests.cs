using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using CsCheck;
using Xunit.Abstractions;
using ZeroTrustMesh.Sidecar.Http1;

namespace ZeroTrustMesh.Sidecar.Tests.Http1;

/// <summary>
/// The response side of the hand-written framing (<see cref="Http1ResponseHead"/> and <see cref="Http1Body"/>, what
/// <c>--http1-fast-path</c> reads from the app) against a real <see cref="HttpClient"/> (what the YARP path reads it
/// with) on the same bytes, sent by a raw-socket app that closes after them. Generated responses, valid and mutated:
/// where the framing accepts, HttpClient must accept with the same status and body; where HttpClient refuses, the
/// framing must refuse. Refusing what HttpClient takes is the safe direction (the caller gets a 502 instead) and is
/// tallied in the output.
/// </summary>
public sealed class Http1ResponseDifferentialTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TcpListener _app = new(IPAddress.Loopback, 0);
    private readonly ConcurrentQueue<byte[]> _answers = new();
    private readonly CancellationTokenSource _stop = new();
    private HttpClient _http = null!;
    private Task _serving = Task.CompletedTask;

    public Task InitializeAsync()
    {
        _app.Start();
        _serving = ServeAsync();
        // One connection per case: the app closes after its bytes.
        _http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero, UseProxy = false, AutomaticDecompression = DecompressionMethods.None })
        {
            Timeout = TimeSpan.FromSeconds(20),
        };
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        _app.Stop();
        await _serving;
        _http.Dispose();
        _stop.Dispose();
    }

    [Fact]
    public async Task Generated_responses_are_framed_as_HttpClient_frames_them()
    {
        var counts = new ConcurrentDictionary<string, int>();
        // One case at a time: the raw app answers connections in the order they come.
        await Responses.SampleAsync(async r =>
        {
            var verdict = await CompareAsync(r);
            counts.AddOrUpdate($"{r.Mutation} → {verdict}", 1, (_, n) => n + 1);
        }, iter: Http1DifferentialTests.Iterations(300), threads: 1, print: r => r.ToString());
        foreach (var (key, n) in counts.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"{n,5}  {key}");
        }
        Assert.Contains(counts.Keys, k => k.StartsWith("none → both accepted", StringComparison.Ordinal));
        Assert.Contains(counts.Keys, k => k.Contains("both refused", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "both accepted")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "both accepted")]
    [InlineData("HTTP/1.1 200 OK\r\n\r\nuntil close", "both accepted")]
    [InlineData("garbage\r\n\r\n", "both refused")]
    [InlineData("HTTP/1.1 2000 OK\r\n\r\n", "both refused")]
    [InlineData("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "both refused")]
    // HttpClient takes the first of two lengths (and, in the generated cases, a length with chunked, a bare LF, obs-fold,
    // NUL in a value); the framing refuses them all, so the fast path answers 502 where the YARP path would pass them on.
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "refused (DuplicateContentLength), HttpClient accepted: stricter")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "both refused")]
    public async Task Fixed_cases_are_framed_as_HttpClient_frames_them(string response, string expected)
    {
        Assert.Equal(expected, await CompareAsync(new Response("fixed", Encoding.Latin1.GetBytes(response))));
    }

    private async Task<string> CompareAsync(Response response)
    {
        var mine = Frame(response.Bytes);
        _answers.Enqueue(response.Bytes);
        var theirs = await FetchAsync();
        var context = $"hand-written: {mine}; HttpClient: {theirs}";
        if (mine.Accepted)
        {
            Assert.True(theirs.Accepted, $"accepted what HttpClient refuses. {context}");
            Assert.True(mine.Status == theirs.Status && mine.Body == theirs.Body, $"framed differently. {context}");
            return "both accepted";
        }
        return theirs.Accepted ? $"refused ({mine.Refusal}), HttpClient accepted: stricter" : "both refused";
    }

    /// <summary>The framing over the whole response, as the fast path reads it from an app that then closes.</summary>
    private static Verdict Frame(byte[] bytes)
    {
        using var head = new Http1ResponseHead();
        var input = new ReadOnlySequence<byte>(bytes);
        var status = head.TryParse(input, requestMethodIsHead: false);
        while (status == Http1ParseStatus.Complete && head.Status is >= 100 and < 200 and not 101)
        {
            input = input.Slice(head.Length);
            status = head.TryParse(input, requestMethodIsHead: false);
        }
        if (status != Http1ParseStatus.Complete || head.Status == 101)
        {
            return new Verdict(false, 0, "", status == Http1ParseStatus.NeedMoreData ? "incomplete head" : head.Refusal.ToString());
        }
        var body = new Http1Body(head.BodyKind, head.ContentLength, 32 * 1024);
        var data = new ArrayBufferWriter<byte>();
        return body.Read(input.Slice(head.Length), isCompleted: true, data, out _) switch
        {
            Http1BodyStatus.Complete => new Verdict(true, head.Status, Encoding.Latin1.GetString(data.WrittenSpan), ""),
            Http1BodyStatus.Refused => new Verdict(false, 0, "", body.Refusal.ToString()),
            _ => new Verdict(false, 0, "", "incomplete body"),
        };
    }

    private async Task<Verdict> FetchAsync()
    {
        try
        {
            using var response = await _http.GetAsync(new Uri($"http://127.0.0.1:{((IPEndPoint)_app.LocalEndpoint).Port}/"));
            var body = await response.Content.ReadAsByteArrayAsync();
            return new Verdict(true, (int)response.StatusCode, Encoding.Latin1.GetString(body), "");
        }
        catch (HttpRequestException e)
        {
            return new Verdict(false, 0, "", e.GetBaseException().Message);
        }
    }

    private async Task ServeAsync()
    {
        try
        {
            while (true)
            {
                using var client = await _app.AcceptTcpClientAsync(_stop.Token);
                var stream = client.GetStream();
                var buffer = new byte[4096];
                var head = new StringBuilder();
                while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var read = await stream.ReadAsync(buffer, _stop.Token);
                    if (read == 0)
                    {
                        break;
                    }
                    head.Append(Encoding.ASCII.GetString(buffer, 0, read));
                }
                if (_answers.TryDequeue(out var answer))
                {
                    await stream.WriteAsync(answer, _stop.Token);
                }
                client.Client.Shutdown(SocketShutdown.Both);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private readonly record struct Verdict(bool Accepted, int Status, string Body, string Refusal)
    {
        public override string ToString() => Accepted ? $"{Status} '{Body}'" : $"refused ({Refusal})";
    }

    internal sealed record Response(string Mutation, byte[] Bytes)
    {
        public override string ToString() => $"{Mutation}: {Encoding.Latin1.GetString(Bytes).Replace("\r", "\\r", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal)}";
    }

    private static readonly string[] MutationNames =
    [
        "status-digits", "version", "bare-lf", "obs-fold", "name-space", "name-control", "length-twice", "length-and-chunked",
        "length-invalid", "chunk-size", "chunk-suffix", "short-body", "nul-in-value", "interim", "reason-control",
    ];

    private static readonly Gen<Response> Responses =
        from status in Gen.OneOf("200", "201", "204", "304", "404", "418", "500", "599")
        from reason in Gen.OneOf("OK", "", "Not Found", "Some Reason")
        from names in Gen.OneOf("X-A", "Content-Type", "Set-Cookie", "X-Long-Name-Here", "Date").Array[0, 3]
        from values in Gen.OneOf("1", "text/plain", "a=b; Path=/", "", "x  y", "\"q\"").Array[3]
        from framing in Gen.OneOf("length", "chunked", "close")
        from chunks in Gen.Char['a', 'z'].Array[1, 10].Array[0, 3]
        from mutation in Gen.Int[0, MutationNames.Length * 2]
        from random in Gen.Int
        select Make(status, reason, names, values, framing, chunks, mutation, random);

    private static Response Make(string status, string reason, string[] names, string[] values, string framing, char[][] chunks, int mutation, int random)
    {
        var rng = new Random(random);
        var data = string.Concat(chunks.Select(c => new string(c)));
        var line = $"HTTP/1.1 {status}" + (reason.Length > 0 || rng.Next(2) == 0 ? " " + reason : "");
        var fields = names.Select((n, i) => $"{n}: {values[i]}").ToList();
        var bodyless = status is "204" or "304";
        var body = "";
        if (!bodyless)
        {
            switch (framing)
            {
                case "length":
                    fields.Add($"Content-Length: {Encoding.Latin1.GetByteCount(data)}");
                    body = data;
                    break;
                case "chunked":
                    fields.Add("Transfer-Encoding: chunked");
                    body = string.Concat(chunks.Select(c => $"{c.Length:x}\r\n{new string(c)}\r\n")) + "0\r\n\r\n";
                    break;
                default:
                    body = data;
                    break;
            }
        }
        var name = mutation < MutationNames.Length ? MutationNames[mutation] : "none";
        switch (name)
        {
            case "status-digits":
                line = line.Replace($" {status}", rng.Next(3) switch { 0 => " 2000", 1 => " 20", _ => " 2x0" }, StringComparison.Ordinal);
                break;
            case "version":
                line = rng.Next(3) switch { 0 => "HTTP/2.0" + line[8..], 1 => "http/1.1" + line[8..], _ => "HTTP/1.1  " + line[9..] };
                break;
            case "bare-lf":
                fields.Insert(0, "X-Lf: 1\n");
                break;
            case "obs-fold":
                fields.Add(" folded");
                break;
            case "name-space":
                fields.Insert(0, rng.Next(2) == 0 ? "Bad Name: x" : "X-Space : x");
                break;
            case "name-control":
                fields.Insert(0, "X\u0001C: x");
                break;
            case "length-twice":
                fields.Add("Content-Length: 1");
                fields.Add("Content-Length: 2");
                break;
            case "length-and-chunked":
                fields.Add("Content-Length: 3");
                fields.Add("Transfer-Encoding: chunked");
                break;
            case "length-invalid":
                fields.Add(rng.Next(3) switch { 0 => "Content-Length: -1", 1 => "Content-Length: 1x", _ => "Content-Length: 99999999999999999999" });
                break;
            case "chunk-size":
                fields.RemoveAll(f => f.StartsWith("Content-Length", StringComparison.Ordinal) || f.StartsWith("Transfer-Encoding", StringComparison.Ordinal));
                fields.Add("Transfer-Encoding: chunked");
                body = rng.Next(2) == 0 ? "zz\r\nhello\r\n0\r\n\r\n" : "-5\r\nhello\r\n0\r\n\r\n";
                bodyless = false;
                break;
            case "chunk-suffix":
                fields.RemoveAll(f => f.StartsWith("Content-Length", StringComparison.Ordinal) || f.StartsWith("Transfer-Encoding", StringComparison.Ordinal));
                fields.Add("Transfer-Encoding: chunked");
                body = "5\r\nhelloXX0\r\n\r\n";
                bodyless = false;
                break;
            case "short-body":
                fields.RemoveAll(f => f.StartsWith("Content-Length", StringComparison.Ordinal) || f.StartsWith("Transfer-Encoding", StringComparison.Ordinal));
                fields.Add("Content-Length: 50");
                body = "short";
                break;
            case "nul-in-value":
                fields.Insert(0, "X-Nul: a\0b");
                break;
            case "interim":
                line = "HTTP/1.1 100 Continue\r\n\r\n" + line;
                break;
            case "reason-control":
                line += "\u0001";
                break;
        }
        var text = line + "\r\n" + string.Concat(fields.Select(f => f.EndsWith('\n') ? f : f + "\r\n")) + "\r\n" + (bodyless && name != "chunk-size" ? "" : body);
        return new Response(name, Encoding.Latin1.GetBytes(text));
    }
}
