using System.Diagnostics.CodeAnalysis;
using Grpc.Core;

namespace ZeroTrustMesh.Proto;

/// <summary>
/// How the control plane tells a workload that the certificate it called with is revoked, so that the workload can
/// tell this refusal from any other: PERMISSION_DENIED, the revocation in the message, the serial in a trailer.
/// </summary>
public static class RevokedCaller
{
    public const string SerialTrailer = "ztm-revoked-serial";

    /// <param name="serial">The revoked certificate's serial, normalized (lowercase hex without leading zeros).</param>
    public static RpcException Refusal(string serial, string message) =>
        new(new Status(StatusCode.PermissionDenied, message), new Metadata { { SerialTrailer, serial } });

    /// <summary>Whether <paramref name="e"/> says the caller's certificate is revoked, and which one.</summary>
    public static bool IsRevoked(RpcException e, [NotNullWhen(true)] out string? serial)
    {
        serial = e.StatusCode == StatusCode.PermissionDenied ? e.Trailers.GetValue(SerialTrailer) : null;
        return serial is not null;
    }
}
