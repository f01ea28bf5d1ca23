using Xunit.Abstractions;
using ZeroTrustMesh.DemoApp.Tests.Infrastructure;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.DemoApp.Tests;

public sealed class CommandLineTests(ITestOutputHelper output)
{
    [Fact]
    public async Task With_tcp_port_minus_1_there_is_no_tcp_listener_and_SIGTERM_stops_it_cleanly()
    {
        await using var app = await DemoAppProcess.StartAsync("no-tcp", tcp: false, output);

        await app.Process.StopAsync();

        Assert.Equal(0, await app.Process.Exited);
        Assert.Equal(0, app.Process.CountLines("tcp listening"));
        // One line per listener and nothing else: Microsoft.* logs only warnings and above.
        Assert.Equal(2, app.Process.Lines.Count);
    }

    [Theory]
    [InlineData("--http-port", "70000", "--http-port must be between 0 and 65535")]
    [InlineData("--tcp-port", "-2", "--tcp-port must be between -1 and 65535")]
    [InlineData("--listen", "localhost", "--listen 'localhost' is not an IP address")]
    public async Task A_bad_command_line_exits_2_with_one_line_saying_why(string option, string value, string error)
    {
        var process = MeshProcess.Start("ztm-demo-app", DemoAppProcess.Dll, [option, value], output);
        var exitCode = await process.Exited.WaitAsync(MeshProcess.DefaultTimeout);
        await process.DisposeAsync(); // waits for the output to be read to its end

        Assert.Equal(2, exitCode);
        Assert.Equal([$"ztm-demo-app: {error}"], process.Lines);
    }
}
