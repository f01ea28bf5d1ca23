using System.Globalization;
using System.Net;
using System.Reflection;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.DemoApp.Tests.Infrastructure;

/// <summary>A running ztm-demo-app on free ports, read from the lines it prints at start.</summary>
internal sealed partial class DemoAppProcess : IAsyncDisposable
{
    private DemoAppProcess(MeshProcess process, Uri http, Uri grpc, IPEndPoint? tcp)
    {
        Process = process;
        Http = http;
        Grpc = grpc;
        Tcp = tcp;
    }

    public MeshProcess Process { get; }
    public Uri Http { get; }
    public Uri Grpc { get; }
    public IPEndPoint? Tcp { get; }

    /// <summary>Where the built executable is: the same configuration as this test assembly.</summary>
    public static string Dll
    {
        get
        {
            var metadata = typeof(DemoAppProcess).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().ToDictionary(a => a.Key, a => a.Value!);
            var path = Path.Combine(metadata["RepoRoot"], "demo/ZeroTrustMesh.DemoApp", "bin", metadata["Configuration"], "net10.0", "ztm-demo-app.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException($"ztm-demo-app is not built at {path}; run 'dotnet build ZeroTrustMesh.sln -c {metadata["Configuration"]}'.");
        }
    }

    public static async Task<DemoAppProcess> StartAsync(string name, bool tcp = true, ITestOutputHelper? output = null)
    {
        var args = new List<string> { "--name", name, "--http-port", "0", "--grpc-port", "0", "--tcp-port", tcp ? "0" : "-1" };
        var process = MeshProcess.Start("ztm-demo-app", Dll, args, output);
        try
        {
            var http = new Uri(Address(await process.WaitForLineAsync("ztm-demo-app: http listening on "), HttpLine()));
            var grpc = new Uri(Address(await process.WaitForLineAsync("ztm-demo-app: grpc listening on "), GrpcLine()));
            var tcpEndPoint = tcp ? IPEndPoint.Parse(Address(await process.WaitForLineAsync("ztm-demo-app: tcp listening on "), TcpLine())) : null;
            return new DemoAppProcess(process, http, grpc, tcpEndPoint);
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    private static string Address(string line, Regex pattern)
    {
        var match = pattern.Match(line);
        Assert.True(match.Success, $"unexpected start line: {line}");
        Assert.NotEqual("0", match.Groups["port"].Value);
        _ = int.Parse(match.Groups["port"].Value, CultureInfo.InvariantCulture);
        return match.Groups["address"].Value;
    }

    // Exactly the documented format, so scripts that parse it keep working.
    [GeneratedRegex(@"^ztm-demo-app: http listening on (?<address>http://127\.0\.0\.1:(?<port>\d+))$")]
    private static partial Regex HttpLine();

    [GeneratedRegex(@"^ztm-demo-app: grpc listening on (?<address>http://127\.0\.0\.1:(?<port>\d+))$")]
    private static partial Regex GrpcLine();

    [GeneratedRegex(@"^ztm-demo-app: tcp listening on (?<address>127\.0\.0\.1:(?<port>\d+))$")]
    private static partial Regex TcpLine();

    public ValueTask DisposeAsync() => Process.DisposeAsync();
}

/// <summary>One demo app for the whole test class: starting a process per test would only add time.</summary>
public sealed class DemoAppFixture : IAsyncLifetime
{
    internal DemoAppProcess App { get; private set; } = null!;

    public async Task InitializeAsync() => App = await DemoAppProcess.StartAsync("test-app");

    public async Task DisposeAsync() => await App.DisposeAsync();
}
