namespace ZeroTrustMesh.Sidecar;

/// <summary>Headers the mesh owns. The identity header is always set by the inbound sidecar and never trusted from the network.</summary>
internal static class MeshHeaders
{
    /// <summary>The verified SPIFFE ID of the caller, for the application behind the inbound sidecar.</summary>
    public const string ClientIdentity = "x-ztm-client-identity";

    /// <summary>Sidecar-to-sidecar only: which declared application port the request is for.</summary>
    public const string TargetPort = "x-ztm-target-port";

    /// <summary>Sidecar-to-sidecar only: the HTTP version the calling application spoke ("1.1" or "2").</summary>
    public const string AppProtocol = "x-ztm-app-protocol";

    /// <summary>Removes every mesh header from a request about to be forwarded.</summary>
    public static void Strip(System.Net.Http.Headers.HttpRequestHeaders headers)
    {
        headers.Remove(ClientIdentity);
        headers.Remove(TargetPort);
        headers.Remove(AppProtocol);
    }
}
