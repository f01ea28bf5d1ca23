using System.Buffers;
using System.IO.Pipelines;
using System.Net.WebSockets;

namespace ZeroTrustMesh.DemoApp.HttpEcho;

/// <summary>
/// The HTTP echo: every path and method replies 200 with the request as the app saw it (<see cref="EchoResponse"/>),
/// after reading, counting and dropping the request body. A few paths do something else for tests:
/// <c>/status/{code}</c>, <c>/bytes/{n}</c>, <c>/json/{n}</c>, <c>/slow/{ms}</c> and the WebSocket echo <c>/ws</c>.
/// HTTP/2 responses end with the trailer <c>x-demo-trailer: done</c>.
/// </summary>
internal static class EchoEndpoints
{
    /// <summary>The caller identity the inbound sidecar asserts to the app.</summary>
    public const string CallerHeader = "x-ztm-client-identity";
    public const string TrailerName = "x-demo-trailer";
    public const string TrailerValue = "done";

    /// <summary>64 KiB where byte k is k % 256; /bytes/{n} repeats it, so byte k of any response is k % 256.</summary>
    private static readonly byte[] Pattern = CreatePattern(64 * 1024);

    /// <summary>The last /json/{n} body built.</summary>
    private static UsersPage? _lastUsers;

    public static void MapEcho(this WebApplication app, string name)
    {
        app.UseWebSockets();
        app.Map("/status/{code:int}", Guard(context => Status(context, name)));
        app.Map("/bytes/{n:long:min(0)}", Guard(Bytes));
        app.Map("/json/{n:int:range(0,67108864)}", Guard(Users));
        app.Map("/slow/{ms:int:range(0,600000)}", Guard(context => Slow(context, name)));
        app.Map("/ws", Guard(WebSocketEcho));
        app.Map("/{**path}", Guard(context => Reply(context, name, StatusCodes.Status200OK)));
    }

    private static async Task Reply(HttpContext context, string name, int status)
    {
        var bodyBytes = await CountBody(context.Request.BodyReader, context.RequestAborted);
        context.Response.StatusCode = status;
        if (status is not (StatusCodes.Status204NoContent or StatusCodes.Status304NotModified))
        {
            await context.Response.WriteAsJsonAsync(Describe(context, name, bodyBytes), DemoJson.Default.EchoResponse, contentType: null, context.RequestAborted);
        }
        AddTrailer(context);
    }

    private static Task Status(HttpContext context, string name)
    {
        var code = int.Parse((string)context.Request.RouteValues["code"]!, System.Globalization.CultureInfo.InvariantCulture);
        if (code is < 200 or > 599)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return context.Response.WriteAsync("status code must be between 200 and 599\n", context.RequestAborted);
        }
        return Reply(context, name, code);
    }

    private static async Task Bytes(HttpContext context)
    {
        var length = long.Parse((string)context.Request.RouteValues["n"]!, System.Globalization.CultureInfo.InvariantCulture);
        await CountBody(context.Request.BodyReader, context.RequestAborted);
        context.Response.ContentType = "application/octet-stream";
        context.Response.ContentLength = length;
        // Written chunk by chunk through the response pipe, whose back-pressure keeps memory flat whatever the length.
        var writer = context.Response.BodyWriter;
        for (var left = length; left > 0;)
        {
            var size = (int)Math.Min(left, Pattern.Length);
            var flush = await writer.WriteAsync(Pattern.AsMemory(0, size), context.RequestAborted);
            if (flush.IsCompleted || flush.IsCanceled)
            {
                return;
            }
            left -= size;
        }
        AddTrailer(context);
    }

    /// <summary>
    /// About n bytes of <c>application/json</c>: a page of users in the shape of OWASP's vulnerable API apps (each with a
    /// password and an SSN), the response the benchmark's ApiSpec redacts. The same n gives the same bytes; the last
    /// body is kept, so a load run measures the proxies, not the app building it.
    /// </summary>
    private static async Task Users(HttpContext context)
    {
        var size = int.Parse((string)context.Request.RouteValues["n"]!, System.Globalization.CultureInfo.InvariantCulture);
        await CountBody(context.Request.BodyReader, context.RequestAborted);
        var page = Volatile.Read(ref _lastUsers) is { } last && last.Size == size ? last : new UsersPage(size, UsersBody(size));
        Volatile.Write(ref _lastUsers, page);
        var body = page.Body;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = body.Length;
        await context.Response.Body.WriteAsync(body, context.RequestAborted);
    }

    private static byte[] UsersBody(int size)
    {
        var json = new System.Text.StringBuilder("{\"page\": 1, \"users\": [");
        for (var i = 0; json.Length < size - 300; i++)
        {
            json.Append(i == 0 ? "" : ", ").Append(System.Globalization.CultureInfo.InvariantCulture,
                $"{{\"id\": {i}, \"username\": \"user{i}\", \"email\": \"user{i}@example.com\", \"password\": \"$2b$12$abcdefghijklmnopqrstuv{i}\", \"ssn\": \"123-45-{i % 10000:D4}\", \"admin\": false, \"address\": {{\"street\": \"{i} Main St\", \"city\": \"Springfield\"}}}}");
        }
        return System.Text.Encoding.UTF8.GetBytes(json.Append("]}").ToString());
    }

    private static async Task Slow(HttpContext context, string name)
    {
        var delay = int.Parse((string)context.Request.RouteValues["ms"]!, System.Globalization.CultureInfo.InvariantCulture);
        // A line to wait on: tests that must act while a request is in flight (a sidecar draining) know it is.
        Console.Out.WriteLine($"{name}: /slow/{delay} started");
        await Task.Delay(delay, context.RequestAborted);
        await Reply(context, name, StatusCodes.Status200OK);
    }

    private static async Task WebSocketEcho(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await context.Response.WriteAsync("/ws expects a WebSocket upgrade\n", context.RequestAborted);
            return;
        }
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            while (true)
            {
                // Frame by frame: a fragmented message comes back fragmented the same way.
                var received = await socket.ReceiveAsync(buffer.AsMemory(), context.RequestAborted);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(socket.CloseStatus ?? WebSocketCloseStatus.NormalClosure, socket.CloseStatusDescription, context.RequestAborted);
                    return;
                }
                await socket.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, context.RequestAborted);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads the request body to its end, counting bytes without keeping them.</summary>
    private static async Task<long> CountBody(PipeReader body, CancellationToken cancellation)
    {
        long total = 0;
        while (true)
        {
            var read = await body.ReadAsync(cancellation);
            total += read.Buffer.Length;
            body.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted || read.IsCanceled)
            {
                return total;
            }
        }
    }

    private static EchoResponse Describe(HttpContext context, string name, long bodyBytes)
    {
        var request = context.Request;
        var headers = new Dictionary<string, string>(request.Headers.Count, StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in request.Headers)
        {
            headers[key] = value.ToString();
        }
        var caller = request.Headers.TryGetValue(CallerHeader, out var identity) ? identity.ToString() : null;
        return new EchoResponse(name, request.Method, request.PathBase.Add(request.Path).Value ?? "/", request.QueryString.Value ?? "", request.Protocol, headers, caller, bodyBytes);
    }

    private static void AddTrailer(HttpContext context)
    {
        if ((HttpProtocol.IsHttp2(context.Request.Protocol) || HttpProtocol.IsHttp3(context.Request.Protocol)) && context.Response.SupportsTrailers())
        {
            context.Response.AppendTrailer(TrailerName, TrailerValue);
        }
    }

    /// <summary>A client that goes away mid-request is normal under load and chaos tests: not an error to log.</summary>
    private static RequestDelegate Guard(RequestDelegate handler) => async context =>
    {
        try
        {
            await handler(context);
        }
        catch (Exception e) when (context.RequestAborted.IsCancellationRequested && e is OperationCanceledException or IOException or WebSocketException)
        {
        }
    };

    private static byte[] CreatePattern(int length)
    {
        var pattern = new byte[length];
        for (var i = 0; i < pattern.Length; i++)
        {
            pattern[i] = (byte)i;
        }
        return pattern;
    }

    private sealed record UsersPage(int Size, byte[] Body);
}
