using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace ZeroTrustMesh.Sidecar.Outbound;

/// <summary>Where the app meant to connect before iptables REDIRECT sent the connection here.</summary>
internal sealed class OriginalDestinationFeature(IPEndPoint destination)
{
    public IPEndPoint Destination { get; } = destination;
}

/// <summary>Reads <c>SO_ORIGINAL_DST</c> (netfilter) from a redirected IPv4 socket.</summary>
internal static class OriginalDestination
{
    private const int SolIp = 0;
    private const int SoOriginalDst = 80;

    /// <summary>The pre-NAT destination, or null when the connection was not redirected (or not on Linux/IPv4).</summary>
    public static IPEndPoint? Of(Socket? socket)
    {
        if (socket is null || !OperatingSystem.IsLinux() || socket.AddressFamily != AddressFamily.InterNetwork)
        {
            return null;
        }
        Span<byte> sockaddr = stackalloc byte[16]; // struct sockaddr_in
        try
        {
            if (socket.GetRawSocketOption(SolIp, SoOriginalDst, sockaddr) < 8)
            {
                return null;
            }
        }
        catch (SocketException)
        {
            return null; // ENOENT: no NAT entry, the app dialled us directly
        }
        var port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]);
        var original = new IPEndPoint(new IPAddress(sockaddr.Slice(4, 4)), port);
        return original.Equals(socket.LocalEndPoint) ? null : original;
    }
}
