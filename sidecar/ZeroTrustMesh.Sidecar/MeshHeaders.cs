using Microsoft.Extensions.Primitives;

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

    private static readonly string[] All = [ClientIdentity, TargetPort, AppProtocol];

    /// <summary>
    /// Removes every mesh header from a request about to be forwarded, and every header whose name becomes a mesh
    /// header's once '_' is read as '-': CGI, WSGI, Rack and others map both to one variable (<c>HTTP_X_ZTM_CLIENT_IDENTITY</c>),
    /// so <c>x_ztm_client_identity</c> would reach the app as the identity (as Envoy's <c>headers_with_underscores_action</c>).
    /// </summary>
    /// <param name="incoming">The request's headers as received, to find such names (only names with '_' are looked at).</param>
    public static void Strip(System.Net.Http.Headers.HttpRequestHeaders headers, IHeaderDictionary incoming)
    {
        foreach (var name in All)
        {
            headers.Remove(name);
        }
        foreach (var (name, _) in incoming)
        {
            if (name.Contains('_', StringComparison.Ordinal) && FoldsIntoMeshHeader(name))
            {
                headers.Remove(name);
            }
        }
    }

    /// <summary>Whether a request header of this name never reaches the app: a mesh header, or a name that folds into one (see <see cref="Strip"/>).</summary>
    public static bool IsStripped(string name)
    {
        foreach (var mesh in All)
        {
            if (string.Equals(name, mesh, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return name.Contains('_', StringComparison.Ordinal) && FoldsIntoMeshHeader(name);
    }

    private static bool FoldsIntoMeshHeader(string name)
    {
        foreach (var mesh in All)
        {
            if (name.Length == mesh.Length && string.Equals(name.Replace('_', '-'), mesh, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }
}
