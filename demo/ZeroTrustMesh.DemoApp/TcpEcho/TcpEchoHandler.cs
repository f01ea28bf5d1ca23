using System.Buffers;
using Microsoft.AspNetCore.Connections;

namespace ZeroTrustMesh.DemoApp.TcpEcho;

/// <summary>
/// Raw TCP echo on a Kestrel listener. Echoes until the client shuts down its sending side, then flushes
/// what is left and returns, so Kestrel closes the connection: the client sees its half-close answered.
/// </summary>
internal sealed class TcpEchoHandler : ConnectionHandler
{
    public override async Task OnConnectedAsync(ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        try
        {
            while (true)
            {
                var read = await input.ReadAsync();
                foreach (var segment in read.Buffer)
                {
                    output.Write(segment.Span);
                }
                input.AdvanceTo(read.Buffer.End);
                var flush = await output.FlushAsync();
                if (read.IsCompleted || read.IsCanceled || flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (ConnectionResetException)
        {
            // The client went away without a FIN; nothing left to echo to.
        }
        await input.CompleteAsync();
        await output.CompleteAsync();
    }
}
