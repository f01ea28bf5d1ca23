using Grpc.Core;
using Microsoft.AspNetCore.Http;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.ControlPlane.Api;

internal static class PeerCertificate
{
    /// <summary>The client certificate the caller presented in the TLS handshake, if any.</summary>
    public static X509Certificate2? Of(ServerCallContext context) => context.GetHttpContext().Connection.ClientCertificate;
}
