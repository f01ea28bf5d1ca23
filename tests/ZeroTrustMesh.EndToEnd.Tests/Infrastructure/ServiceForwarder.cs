using System.Net;
using System.Net.Sockets;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>
/// A Kubernetes Service as kube-proxy makes it, for processes on loopback: one address (127.0.0.1:port) whose every new
/// TCP connection goes to one of the ready endpoints, taken in turn (a backend that refuses is skipped). A connection
/// stays with its backend until either side closes it; when the backend dies the client's connection ends with it.
/// Endpoints are set by the test, as the EndpointSlice controller sets them from pod readiness.
/// </summary>
internal sealed class ServiceForwarder : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly List<IPEndPoint> _endpoints = [];
    private readonly List<Task> _connections = [];
    private readonly Task _accepting;
    private int _next;

    public ServiceForwarder()
    {
        _listener.Start();
        Address = new Uri($"https://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}");
        _accepting = AcceptAsync(_stopping.Token);
    }

    /// <summary>The Service's address, as sidecars are given it.</summary>
    public Uri Address { get; }

    /// <summary>Connections made so far, per backend port.</summary>
    public Dictionary<int, int> Connections { get; } = [];

    public void AddEndpoint(Uri address)
    {
        lock (_gate)
        {
            _endpoints.Add(new IPEndPoint(IPAddress.Parse(address.Host), address.Port));
        }
    }

    public void RemoveEndpoint(Uri address)
    {
        lock (_gate)
        {
            _endpoints.RemoveAll(e => e.Port == address.Port);
        }
    }

    private async Task AcceptAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(stopping);
            }
            catch (Exception) when (stopping.IsCancellationRequested)
            {
                return;
            }
            lock (_gate)
            {
                _connections.RemoveAll(t => t.IsCompleted);
                _connections.Add(ForwardAsync(client, stopping));
            }
        }
    }

    private async Task ForwardAsync(Socket client, CancellationToken stopping)
    {
        using (client)
        {
            client.NoDelay = true;
            using var backend = await ConnectAsync(stopping);
            if (backend is null)
            {
                return; // no ready endpoint: the connection is refused (closed)
            }
            using var done = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            await Task.WhenAny(PipeAsync(client, backend, done.Token), PipeAsync(backend, client, done.Token));
            await done.CancelAsync();
        }
    }

    /// <summary>The next ready endpoint that accepts, in turn; null when none does.</summary>
    private async Task<Socket?> ConnectAsync(CancellationToken stopping)
    {
        IPEndPoint[] endpoints;
        int start;
        lock (_gate)
        {
            endpoints = [.. _endpoints];
            start = _next++;
        }
        for (var i = 0; i < endpoints.Length; i++)
        {
            var endpoint = endpoints[(start + i) % endpoints.Length];
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(endpoint, stopping);
                lock (_gate)
                {
                    Connections[endpoint.Port] = Connections.GetValueOrDefault(endpoint.Port) + 1;
                }
                return socket;
            }
            catch (SocketException)
            {
                socket.Dispose();
            }
        }
        return null;
    }

    /// <summary>Copies until the source ends or fails; then ends the other direction too (shuts the destination down).</summary>
    private static async Task PipeAsync(Socket from, Socket to, CancellationToken cancellation)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, cancellation);
                if (read == 0)
                {
                    break;
                }
                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, cancellation);
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // the other side is gone, or the forwarder stops
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        await _accepting;
        Task[] connections;
        lock (_gate)
        {
            connections = [.. _connections];
        }
        await Task.WhenAll(connections);
        _stopping.Dispose();
    }
}
