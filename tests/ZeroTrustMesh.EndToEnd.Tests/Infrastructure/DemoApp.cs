using System.Net;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>A running <c>ztm-demo-app</c> (HTTP/1.1 + h2c echo, gRPC Echo, TCP echo) on free ports, read from the lines it prints at start.</summary>
internal sealed class DemoApp(MeshProcess process, int httpPort, int grpcPort, int tcpPort)
{
    public MeshProcess Process => process;

    public int HttpPort => httpPort;

    public int GrpcPort => grpcPort;

    public int TcpPort => tcpPort;

    public static async Task<DemoApp> StartAsync(TestMesh mesh, string name)
    {
        var process = mesh.Track(MeshProcess.Start("app-" + name, Executables.DemoApp,
            ["--name", name, "--http-port", "0", "--grpc-port", "0", "--tcp-port", "0"], mesh.Output, mesh.Environment));
        var http = Port(await process.WaitForLineAsync("ztm-demo-app: http listening on "));
        var grpc = Port(await process.WaitForLineAsync("ztm-demo-app: grpc listening on "));
        var tcp = Port(await process.WaitForLineAsync("ztm-demo-app: tcp listening on "));
        return new DemoApp(process, http, grpc, tcp);
    }

    /// <summary>The sidecar arguments that declare this app's ports: HTTP first (the default), then gRPC, then TCP.</summary>
    public string[] SidecarArguments =>
        ["--app-port", Invariant(httpPort), "--app-port", Invariant(grpcPort), "--tcp-port", Invariant(tcpPort)];

    private static int Port(string line) => IPEndPoint.Parse(line[(line.LastIndexOf(' ') + 1)..].Replace("http://", "", StringComparison.Ordinal)).Port;

    private static string Invariant(int port) => port.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
