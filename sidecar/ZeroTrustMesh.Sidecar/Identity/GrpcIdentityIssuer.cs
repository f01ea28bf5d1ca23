using Google.Protobuf;
using Grpc.Core;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ProtoIdentity = ZeroTrustMesh.Proto.V1.Identity;
using ZeroTrustMesh.Proto.V1;
using TrustBundle = ZeroTrustMesh.Identity.TrustBundle;

namespace ZeroTrustMesh.Sidecar.Identity;

/// <summary>
/// Calls the control plane's Identity service. Each call opens its own mTLS channel: calls are rare
/// (start, then every half-lifetime), and a fresh connection is sure to present the current certificate.
/// </summary>
internal sealed class GrpcIdentityIssuer(SidecarOptions options, IdentityState state, TimeProvider time) : IIdentityIssuer
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);

    public Task<IssuedCertificate> SignAsync(byte[] csr, IdentityProof proof, CancellationToken cancellation)
    {
        var request = new SignCertificateRequest { Csr = ByteString.CopyFrom(csr) };
        proof.AddTo(request);
        return CallAsync(clientCertificate: null, (client, deadline) =>
            client.SignCertificateAsync(request, deadline: deadline, cancellationToken: cancellation).ResponseAsync);
    }

    public Task<IssuedCertificate> RenewAsync(byte[] csr, WorkloadIdentity current, CancellationToken cancellation) =>
        CallAsync(current, (client, deadline) =>
            client.RenewCertificateAsync(new RenewCertificateRequest { Csr = ByteString.CopyFrom(csr) }, deadline: deadline, cancellationToken: cancellation).ResponseAsync);

    private async Task<IssuedCertificate> CallAsync(WorkloadIdentity? clientCertificate, Func<ProtoIdentity.IdentityClient, DateTime, Task<SignCertificateResponse>> call)
    {
        // Trust what the control plane last sent, else the bootstrap bundle the operator gave us.
        SvidVerification? refused = null;
        using var channel = ControlPlaneChannel.Create(options.ControlPlane, () => state.Bundle ?? options.BootstrapBundle, () => clientCertificate?.Certificate, time,
            refused: verification => refused = verification);
        SignCertificateResponse response;
        try
        {
            response = await call(new ProtoIdentity.IdentityClient(channel), DateTime.UtcNow + CallTimeout);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.InvalidArgument or StatusCode.Unauthenticated or StatusCode.PermissionDenied)
        {
            throw new IdentityRefusedException($"{e.Status.Detail} ({e.StatusCode})", e);
        }
        catch (RpcException e) when (refused is { } why)
        {
            // The call says only that the connection failed; this says which certificate was refused and why.
            throw new InvalidDataException($"the control plane at {options.ControlPlane} presented a certificate this sidecar refuses: {why.Reason}", e);
        }
        TrustBundle trustBundle;
        try
        {
            trustBundle = TrustBundleMapping.FromProto(response.TrustBundle ?? new Proto.V1.TrustBundle());
        }
        catch (FormatException e)
        {
            throw new InvalidDataException($"the control plane's answer is unusable: {e.Message}", e);
        }
        return new IssuedCertificate(response.SpiffeId, [.. response.CertificateChain.Select(c => c.ToByteArray())], trustBundle);
    }
}
