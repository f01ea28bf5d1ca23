using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>Why a caller was refused, in the order the checks run.</summary>
internal enum CallerFailure
{
    None,
    /// <summary>No certificate, or not a valid SVID of this mesh: the caller is nobody we know.</summary>
    Unauthenticated,
    /// <summary>A valid SVID that is revoked: it proves nothing any more.</summary>
    Revoked,
    /// <summary>A valid SVID of an identity this call does not take.</summary>
    NotAllowed,
}

/// <summary>The outcome of checking a caller: its SPIFFE ID and certificate, or the failure and why.</summary>
internal readonly record struct CallerCheck(SpiffeId Id, X509Certificate2? Certificate, CallerFailure Failure, string? Reason)
{
    public bool IsValid => Failure == CallerFailure.None;

    /// <summary>
    /// The refusal as a gRPC status: Unauthenticated (<paramref name="needs"/> says what was needed), or
    /// PermissionDenied — for a revoked certificate with its serial in a trailer (<see cref="RevokedCaller"/>).
    /// </summary>
    public RpcException ToRpcException(string needs) => Failure switch
    {
        CallerFailure.Revoked => RevokedCaller.Refusal(RevocationList.NormalizedSerial(Certificate!), Reason!),
        CallerFailure.NotAllowed => new RpcException(new Status(StatusCode.PermissionDenied, Reason!)),
        _ => new RpcException(new Status(StatusCode.Unauthenticated, $"{needs}: {Reason}")),
    };
}

/// <summary>
/// The one check of a caller's certificate, for every call that takes one (workload calls, renewal, admin calls): an
/// SVID that chains to this CA's bundle, follows the SVID rules, is not revoked, and names an identity the call takes.
/// </summary>
internal sealed class CallerVerifier(CertificateAuthority ca, IRevocationStore revocations)
{
    /// <param name="refuse">Why the call does not take this (valid, unrevoked) identity; null when it does.</param>
    /// <param name="revocable">
    /// False for the operator: revocation is for workload SVIDs, and revoking the operator credential's serial must not
    /// lock the operator out of the API that lists and manages revocations.
    /// </param>
    public CallerCheck Check(X509Certificate2? certificate, Func<SpiffeId, string?> refuse, bool revocable = true)
    {
        var verification = SvidVerifier.Verify(certificate, ca.ChainAfterLeaf, ca.Bundle, ca.Time.GetUtcNow(), revocable ? revocations.Current : null, SvidPurpose.Client);
        if (!verification.IsValid)
        {
            var failure = verification.Failure == SvidFailure.Revoked ? CallerFailure.Revoked : CallerFailure.Unauthenticated;
            return new CallerCheck(default, certificate, failure, verification.Reason);
        }
        return refuse(verification.Id) is { } reason
            ? new CallerCheck(verification.Id, certificate, CallerFailure.NotAllowed, reason)
            : new CallerCheck(verification.Id, certificate, CallerFailure.None, null);
    }

    /// <summary>The refusal of a caller that is not a workload (the operator, the control plane itself).</summary>
    public static string? WorkloadsOnly(SpiffeId id) => id.TryGetWorkload(out _, out _) ? null : $"'{id}' is not a workload identity";
}
