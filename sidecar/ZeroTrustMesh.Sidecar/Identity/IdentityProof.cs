using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.Sidecar.Identity;

/// <summary>What the sidecar proves who it is with when it asks for a first certificate (renewals prove it with the certificate).</summary>
internal abstract record IdentityProof
{
    private IdentityProof()
    {
    }

    /// <summary>Puts the proof into <paramref name="request"/>.</summary>
    /// <exception cref="IOException">The proof could not be read (a token file kubelet has not written yet): worth retrying.</exception>
    public abstract void AddTo(SignCertificateRequest request);

    /// <summary>A single-use token an operator minted for one namespace and service account (outside Kubernetes).</summary>
    public sealed record JoinToken(string Token) : IdentityProof
    {
        public override void AddTo(SignCertificateRequest request) => request.JoinToken = Token;

        // A record prints its members; a token must never reach a log.
        public override string ToString() => "join token";
    }

    /// <summary>
    /// A projected Kubernetes service-account token, read from <paramref name="Path"/> at every signing: kubelet
    /// replaces it before it expires, so a copy taken at start would be refused after a restart of the sidecar alone.
    /// </summary>
    public sealed record ServiceAccountTokenFile(string Path) : IdentityProof
    {
        public override void AddTo(SignCertificateRequest request)
        {
            string token;
            try
            {
                token = File.ReadAllText(Path).Trim();
            }
            catch (Exception e) when (e is UnauthorizedAccessException)
            {
                throw new IOException($"cannot read the service-account token {Path}: {e.Message}", e);
            }
            if (token.Length == 0)
            {
                throw new IOException($"the service-account token file {Path} is empty");
            }
            request.ServiceAccountToken = token;
        }

        public override string ToString() => $"service-account token {Path}";
    }
}
