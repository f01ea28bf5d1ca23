using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using IdentityClient = ZeroTrustMesh.Proto.V1.Identity.IdentityClient;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// What the data-plane harness asks of the real control plane: join tokens (operator credential), the policy that allows
/// the measured calls, SVIDs for proxies and clients that are not sidecars (join token + CSR through the Identity API,
/// ECDSA P-256, as a sidecar gets them), and sidecar processes started with a join token.
/// </summary>
internal static class MeshSetup
{
    public const string Namespace = "shop";

    public static async Task<string> MintAsync(ControlPlaneProcess controlPlane, string serviceAccount, CancellationToken cancellation)
    {
        var bundle = controlPlane.Bundle;
        using var operatorCertificate = controlPlane.OperatorCertificate;
        using var admin = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => operatorCertificate, TimeProvider.System);
        var created = await new IdentityAdmin.IdentityAdminClient(admin).CreateJoinTokenAsync(
            new CreateJoinTokenRequest { Namespace = Namespace, ServiceAccount = serviceAccount, TtlSeconds = 600 }, cancellationToken: cancellation);
        return created.Token;
    }

    /// <summary>The policy of the measured calls: frontend may GET <paramref name="httpPath"/> and POST <paramref name="grpcPath"/> on orders.</summary>
    public static Task AllowFrontendAsync(ControlPlaneProcess controlPlane, string httpPath, string grpcPath, CancellationToken cancellation) =>
        ApplyAsync(controlPlane, "benchmark.yaml", $$"""
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata:
              name: orders-from-frontend
              namespace: {{Namespace}}
            spec:
              selector:
                service: orders
              action: ALLOW
              rules:
                - from:
                    - source:
                        principals: ["spiffe://cluster.local/ns/{{Namespace}}/sa/frontend"]
                  to:
                    - operation:
                        methods: ["GET"]
                        paths: ["{{httpPath}}"]
                    - operation:
                        methods: ["POST"]
                        paths: ["{{grpcPath}}"]
            """, cancellation);

    /// <summary>Applies policy YAML with the operator credential, as <c>ztmctl apply</c> does.</summary>
    public static async Task ApplyAsync(ControlPlaneProcess controlPlane, string source, string yaml, CancellationToken cancellation)
    {
        var bundle = controlPlane.Bundle;
        using var operatorCertificate = controlPlane.OperatorCertificate;
        using var admin = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => operatorCertificate, TimeProvider.System);
        await new PolicyAdmin.PolicyAdminClient(admin).ApplyAsync(new ApplyRequest { Source = source, Yaml = yaml }, cancellationToken: cancellation);
    }

    /// <summary>Deletes one policy resource through the operator API.</summary>
    public static async Task DeleteAsync(ControlPlaneProcess controlPlane, string kind, string name, CancellationToken cancellation)
    {
        var bundle = controlPlane.Bundle;
        using var operatorCertificate = controlPlane.OperatorCertificate;
        using var admin = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => operatorCertificate, TimeProvider.System);
        await new PolicyAdmin.PolicyAdminClient(admin).DeleteAsync(new DeleteRequest { Kind = kind, Namespace = Namespace, Name = name }, cancellationToken: cancellation);
    }

    /// <summary>An SVID from the real Identity API (join token + CSR), as PEM certificate chain + PKCS#8 key, for a proxy or client that is not a sidecar.</summary>
    public static async Task<string> SvidPemAsync(ControlPlaneProcess controlPlane, string serviceAccount, CancellationToken cancellation)
    {
        var token = await MintAsync(controlPlane, serviceAccount, cancellation);
        var bundle = controlPlane.Bundle;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=ZeroTrustMesh", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(SubjectAltNames.ForUri($"spiffe://{SpiffeId.DefaultTrustDomain}/ns/{Namespace}/sa/{serviceAccount}"));
        using var anonymous = ControlPlaneChannel.Create(controlPlane.Address, () => bundle, () => null, TimeProvider.System);
        var signed = await new IdentityClient(anonymous).SignCertificateAsync(
            new SignCertificateRequest { Csr = ByteString.CopyFrom(request.CreateSigningRequest()), JoinToken = token }, cancellationToken: cancellation);
        var pem = string.Concat(signed.CertificateChain.Select(der => PemEncoding.WriteString("CERTIFICATE", der.Span) + "\n"));
        return pem + key.ExportPkcs8PrivateKeyPem() + "\n";
    }

    /// <summary>The same SVID as a certificate with its private key, for an in-process TLS client.</summary>
    public static async Task<X509Certificate2> SvidAsync(ControlPlaneProcess controlPlane, string serviceAccount, CancellationToken cancellation)
    {
        var pem = await SvidPemAsync(controlPlane, serviceAccount, cancellation);
        using var ephemeral = X509Certificate2.CreateFromPem(pem, pem);
        // A PKCS#12 round trip gives a key TLS can use on every platform (an ephemeral key is refused on some).
        return X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>A sidecar with its own join token file in <paramref name="root"/>, every port picked free.</summary>
    public static Task<LoadProcess> StartSidecarAsync(string name, string serviceAccount, string sidecar, ControlPlaneProcess controlPlane, string root,
        IReadOnlyDictionary<string, string> environment, CancellationToken cancellation, params string[] extra) =>
        StartSidecarAsync(null, name, serviceAccount, sidecar, controlPlane, root, environment, cancellation, extra);

    /// <summary>The same, inside <paramref name="netns"/> (with its control plane there too) when given.</summary>
    public static async Task<LoadProcess> StartSidecarAsync(CaptureNamespace? netns, string name, string serviceAccount, string sidecar, ControlPlaneProcess controlPlane, string root,
        IReadOnlyDictionary<string, string> environment, CancellationToken cancellation, params string[] extra)
    {
        var token = await MintAsync(controlPlane, serviceAccount, cancellation);
        var tokenFile = Path.Combine(root, name + ".token");
        File.WriteAllText(tokenFile, token);
        return LoadProcess.Start(name, sidecar,
            ["--control-plane", controlPlane.SidecarAddress.ToString(), "--trust-bundle", Path.Combine(controlPlane.DataDir, "bundle.pem"), "--join-token-file", tokenFile,
                "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0", .. extra], environment, netns);
    }

    /// <summary>
    /// Milliseconds from a sidecar's exec to its first <c>/healthz/ready</c> 200 (certificate signed and policy received),
    /// the admin port read from its start-up line, polled every 5 ms.
    /// </summary>
    public static async Task<double> ExecToReadyAsync(LoadProcess sidecar, TimeSpan timeout, CancellationToken cancellation)
    {
        const string AdminLine = "ztm-sidecar: admin listening on ";
        var line = (await sidecar.WaitForLineAsync(AdminLine, timeout)).Line;
        var admin = new Uri(new Uri(line[(line.IndexOf(AdminLine, StringComparison.Ordinal) + AdminLine.Length)..].Split(' ')[0]), "/healthz/ready");
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        while (System.Diagnostics.Stopwatch.GetTimestamp() < deadline && !sidecar.HasExited)
        {
            try
            {
                using var response = await client.GetAsync(admin, cancellation);
                if (response.IsSuccessStatusCode)
                {
                    return System.Diagnostics.Stopwatch.GetElapsedTime(sidecar.StartedAt).TotalMilliseconds;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            await Task.Delay(5, cancellation);
        }
        throw new InvalidOperationException($"{sidecar.Name} was not ready at {admin} within {timeout.TotalSeconds}s. Output:\n{sidecar.Output}");
    }
}
