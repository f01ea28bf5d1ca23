using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace ZeroTrustMesh.Hosting.Tests;

/// <summary>The deadline in front of real Kestrel HTTP/2 (h2c on 127.0.0.1:0), its clock a fake one.</summary>
public sealed class Http2FrameDeadlineTests : IAsyncLifetime
{
    private static readonly TimeSpan Signal = TimeSpan.FromSeconds(30);

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly TaskCompletionSource _expired = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private WebApplication _app = null!;
    private int _connections;

    private Uri Address => new(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single());

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            listen.Use(next => connection =>
            {
                Interlocked.Increment(ref _connections);
                return Http2FrameDeadline.RunAsync(connection, next, Http2FrameDeadline.Default, _time, _ => _expired.TrySetResult());
            });
        }));
        _app = builder.Build();
        _app.Run(context => context.Response.WriteAsync("ok"));
        await _app.StartAsync();
    }

    public async Task DisposeAsync() => await _app.DisposeAsync();

    [Fact]
    public async Task Requests_pass_through_and_an_idle_connection_is_kept()
    {
        using var http = new HttpClient(new SocketsHttpHandler()) { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };

        Assert.Equal("ok", await http.GetStringAsync(Address));
        _time.Advance(TimeSpan.FromHours(1));
        Assert.Equal("ok", await http.GetStringAsync(Address));

        Assert.Equal(1, _connections);
        Assert.False(_expired.Task.IsCompleted);
    }

    [Fact]
    public async Task A_trickled_headers_frame_is_cut_off_at_the_deadline()
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(Address.Host, Address.Port);
        await socket.SendAsync((byte[])[.. Http2Preface.Bytes, 0, 0, 0, 4, 0, 0, 0, 0, 0]);
        // The server's SETTINGS: it has taken the preface, so what follows is the only frame in progress.
        using (var timeout = new CancellationTokenSource(Signal))
        {
            Assert.True(await socket.ReceiveAsync(new byte[9], timeout.Token) > 0);
        }
        await socket.SendAsync((byte[])[0, 0, 20, 1, 4, 0, 0, 0, 1, 0x82]); // HEADERS, 20 bytes promised, 1 sent
        var closed = ReadUntilClosedAsync(socket);

        // Sent bytes reach the server asynchronously: move the clock until the deadline it set has passed.
        while (!_expired.Task.IsCompleted)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            await Task.WhenAny(_expired.Task, Task.Delay(50));
        }

        await closed.WaitAsync(Signal);
    }

    private static async Task ReadUntilClosedAsync(Socket socket)
    {
        var buffer = new byte[1024];
        try
        {
            while (await socket.ReceiveAsync(buffer) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // reset: closed as well
        }
    }
}
