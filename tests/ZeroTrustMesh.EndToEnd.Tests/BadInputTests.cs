using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// The control plane shared by <see cref="BadInputTests"/>. Its token store starts with one join token that
/// expired a minute ago: a real process cannot be given a fake clock, and waiting out a short-lived token
/// would make the test a sleep.
/// </summary>
public sealed class BadInputFixture : ControlPlaneFixture
{
    public const string ExpiredToken = "ztmjt_seeded-by-the-test-and-expired-a-minute-ago";

    protected override void PrepareDataDir(string dataDir)
    {
        // The store's on-disk format (join-tokens.json): only a SHA-256 of each token is kept.
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(ExpiredToken)));
        var expiresAt = DateTimeOffset.UtcNow.AddMinutes(-1).ToString("O", CultureInfo.InvariantCulture);
        File.WriteAllText(Path.Combine(dataDir, "join-tokens.json"),
            $$"""[{"hash":"{{hash}}","spiffeId":"spiffe://cluster.local/ns/shop/sa/orders","expiresAt":"{{expiresAt}}","usedAt":null}]""");
    }
}

/// <summary>
/// Every bad input to the identity API is refused with the right status and a message that says what is wrong,
/// is logged as one line, and changes nothing: a join token refused before it was spent still works afterwards.
/// </summary>
public sealed class BadInputTests : IClassFixture<BadInputFixture>
{
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private const string Payments = "spiffe://cluster.local/ns/shop/sa/payments";
    private const string SignRefused = "svid refused call=sign ";
    private const string RenewRefused = "svid refused call=renew ";

    private readonly ControlPlane _controlPlane;

    public BadInputTests(BadInputFixture fixture, ITestOutputHelper output)
    {
        fixture.AttachOutput(output);
        _controlPlane = fixture.ControlPlane;
    }

    // ---- SignCertificate: the CSR ----

    [Fact]
    public async Task Malformed_csr_is_invalid_argument_and_the_token_stays_unused()
    {
        var token = await _controlPlane.MintTokenAsync();
        var garbage = new byte[300];
        new Random(42).NextBytes(garbage);

        await AssertSignRefusedAsync(garbage, token, StatusCode.InvalidArgument, "InvalidRequest", "the CSR is malformed: it is not a DER PKCS#10 request");
        await AssertTokenStillWorksAsync(token);
    }

    [Fact]
    public async Task Csr_whose_signature_does_not_verify_is_invalid_argument_and_the_token_stays_unused()
    {
        var token = await _controlPlane.MintTokenAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = WorkloadCredential.Csr(key, Orders);
        // The signature BIT STRING ends the CSR: its last byte is the low byte of the ECDSA 's' INTEGER,
        // so flipping a bit there keeps the DER valid and breaks only the signature.
        csr[^1] ^= 0x01;

        await AssertSignRefusedAsync(csr, token, StatusCode.InvalidArgument, "InvalidRequest", "the CSR's signature does not verify with the key it carries");
        await AssertTokenStillWorksAsync(token);
    }

    [Fact]
    public async Task Csr_for_another_spiffe_id_is_permission_denied_and_the_token_stays_unused()
    {
        var token = await _controlPlane.MintTokenAsync("shop", "orders");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        await AssertSignRefusedAsync(WorkloadCredential.Csr(key, Payments), token, StatusCode.PermissionDenied, "PermissionDenied",
            $"the CSR asks for '{Payments}' but the caller proved '{Orders}'");
        await AssertTokenStillWorksAsync(token);
    }

    [Fact]
    public async Task Csr_with_a_dns_san_besides_the_spiffe_id_is_invalid_argument_and_the_token_stays_unused()
    {
        var token = await _controlPlane.MintTokenAsync();
        var names = new SubjectAlternativeNameBuilder();
        names.AddUri(new Uri(Orders));
        names.AddDnsName("orders.shop.svc");

        await AssertSignRefusedAsync(EcCsr(names.Build()), token, StatusCode.InvalidArgument, "InvalidRequest", "asks for 2 subject alternative names");
        await AssertTokenStillWorksAsync(token);
    }

    [Fact]
    public async Task Csr_with_two_uri_sans_is_invalid_argument_and_the_token_stays_unused()
    {
        var token = await _controlPlane.MintTokenAsync();
        var names = new SubjectAlternativeNameBuilder();
        names.AddUri(new Uri(Orders));
        names.AddUri(new Uri("spiffe://cluster.local/ns/shop/sa/orders-admin"));

        await AssertSignRefusedAsync(EcCsr(names.Build()), token, StatusCode.InvalidArgument, "InvalidRequest", "asks for 2 subject alternative names");
        await AssertTokenStillWorksAsync(token);
    }

    [Fact]
    public async Task Csr_asking_to_be_a_ca_is_invalid_argument_and_the_token_stays_unused()
    {
        var token = await _controlPlane.MintTokenAsync();

        await AssertSignRefusedAsync(EcCsr(new X509BasicConstraintsExtension(true, false, 0, true)), token,
            StatusCode.InvalidArgument, "InvalidRequest", "asks for a CA certificate (cA=true)");
        await AssertTokenStillWorksAsync(token);
    }

    [Fact]
    public async Task Rsa_1024_key_is_invalid_argument_and_the_token_stays_unused()
    {
        var token = await _controlPlane.MintTokenAsync();
        using var key = RSA.Create(1024);
        var csr = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1).CreateSigningRequest();

        await AssertSignRefusedAsync(csr, token, StatusCode.InvalidArgument, "InvalidRequest", "RSA key has 1024 bits");
        await AssertTokenStillWorksAsync(token);
    }

    [Fact]
    public async Task P521_key_is_invalid_argument_and_the_token_stays_unused()
    {
        var token = await _controlPlane.MintTokenAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP521);

        await AssertSignRefusedAsync(WorkloadCredential.Csr(key, Orders), token, StatusCode.InvalidArgument, "InvalidRequest",
            "EC key uses curve 1.3.132.0.35; only P-256 and P-384 are accepted");
        await AssertTokenStillWorksAsync(token);
    }

    [Fact]
    public async Task Csr_over_the_csr_limit_is_invalid_argument_and_the_token_stays_unused()
    {
        var token = await _controlPlane.MintTokenAsync();

        await AssertSignRefusedAsync(new byte[9 * 1024], token, StatusCode.InvalidArgument, "InvalidRequest", "the CSR is 9216 bytes; at most 8192 are accepted");
        await AssertTokenStillWorksAsync(token);
    }

    [Fact]
    public async Task Request_over_the_message_limit_is_refused_and_the_control_plane_keeps_serving()
    {
        // gRPC refuses this while reading the message (the server takes at most 64 KiB), before the issuer runs:
        // there is no "svid refused" line to wait for. The issuer's own CSR limit is the test above.
        var token = await _controlPlane.MintTokenAsync();
        var e = await Assert.ThrowsAsync<RpcException>(() => WorkloadCredential.SignAsync(_controlPlane, new byte[100 * 1024], token));

        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Contains("exceeds the maximum", e.Status.Detail, StringComparison.Ordinal);
        await AssertTokenStillWorksAsync(token);
    }

    // ---- SignCertificate: the join token ----

    [Fact]
    public async Task Expired_join_token_is_unauthenticated_expired()
    {
        // Another token minted after this one expired (a busy mesh) must not change how it is refused.
        await _controlPlane.MintTokenAsync("shop", "unrelated");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        await AssertSignRefusedAsync(WorkloadCredential.Csr(key), BadInputFixture.ExpiredToken, StatusCode.Unauthenticated, "Unauthenticated", "join token expired at ");
    }

    [Fact]
    public async Task Unknown_join_token_is_unauthenticated()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        await AssertSignRefusedAsync(WorkloadCredential.Csr(key), JoinTokenPrefix + "never-minted", StatusCode.Unauthenticated, "Unauthenticated", "unknown join token");
    }

    [Fact]
    public async Task Missing_join_token_is_unauthenticated()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        await AssertSignRefusedAsync(WorkloadCredential.Csr(key), "", StatusCode.Unauthenticated, "Unauthenticated", "no proof of identity");
    }

    [Fact]
    public async Task Used_join_token_is_unauthenticated_already_used()
    {
        var token = await _controlPlane.MintTokenAsync();
        await AssertTokenStillWorksAsync(token);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        await AssertSignRefusedAsync(WorkloadCredential.Csr(key), token, StatusCode.Unauthenticated, "Unauthenticated", "already used");
    }

    // ---- RenewCertificate ----

    [Fact]
    public async Task Renewal_with_an_expired_certificate_is_unauthenticated_expired()
    {
        using var ca = Pem.LoadCertificateWithKey(Path.Combine(_controlPlane.DataDir, "ca", "ca.crt"), Path.Combine(_controlPlane.DataDir, "ca", "ca.key"));
        var now = DateTimeOffset.UtcNow;
        using var expired = TestCertificates.CreateSvid(ca, Orders, now.AddHours(-2), now.AddHours(-1));

        await AssertRenewRefusedAsync(expired, Orders, StatusCode.Unauthenticated, "Unauthenticated", "certificate expired at ");
    }

    [Fact]
    public async Task Renewal_with_a_certificate_from_a_foreign_ca_is_unauthenticated()
    {
        using var foreignCa = TestCertificates.CreateCa("Foreign CA");
        var now = DateTimeOffset.UtcNow;
        using var foreign = TestCertificates.CreateSvid(foreignCa, Orders, now.AddMinutes(-1), now.AddHours(1));

        await AssertRenewRefusedAsync(foreign, Orders, StatusCode.Unauthenticated, "Unauthenticated", "does not chain to the trust bundle of 'cluster.local'");
    }

    [Fact]
    public async Task Renewal_without_a_client_certificate_is_unauthenticated()
    {
        await AssertRenewRefusedAsync(null, Orders, StatusCode.Unauthenticated, "Unauthenticated", "no client certificate was presented");
    }

    [Fact]
    public async Task Renewal_csr_for_another_spiffe_id_is_permission_denied()
    {
        using var current = await WorkloadCredential.Issue(_controlPlane, "shop", "orders");

        await AssertRenewRefusedAsync(current, Payments, StatusCode.PermissionDenied, "PermissionDenied", $"the CSR asks for '{Payments}' but the caller proved '{Orders}'");
        // The same certificate still renews for its own identity.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var renewed = await WorkloadCredential.RenewAsync(_controlPlane, current, WorkloadCredential.Csr(key, Orders));
        Assert.Equal(Orders, renewed.SpiffeId);
    }

    [Fact]
    public async Task Renewal_with_the_operator_credential_is_permission_denied()
    {
        using var operatorCertificate = _controlPlane.OperatorCertificate;

        await AssertRenewRefusedAsync(operatorCertificate, null, StatusCode.PermissionDenied, "PermissionDenied", "is not a workload identity");
    }

    // ---- CreateJoinToken ----

    [Fact]
    public async Task Join_token_ttl_over_24h_is_invalid_argument()
    {
        await AssertTokenRefusedAsync(new CreateJoinTokenRequest { Namespace = "shop", ServiceAccount = "orders", TtlSeconds = 86_401 },
            "is longer than the maximum 1d");
    }

    [Fact]
    public async Task Join_token_namespace_with_a_slash_is_invalid_argument()
    {
        await AssertTokenRefusedAsync(new CreateJoinTokenRequest { Namespace = "shop/sa/admin", ServiceAccount = "orders" },
            "do not form a valid SPIFFE ID");
    }

    private const string JoinTokenPrefix = "ztmjt_";

    private static byte[] EcCsr(params X509Extension[] extensions)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256);
        foreach (var extension in extensions)
        {
            request.CertificateExtensions.Add(extension);
        }
        return request.CreateSigningRequest();
    }

    /// <summary>The token was not spent: a good CSR with it gets the identity it names.</summary>
    private async Task AssertTokenStillWorksAsync(string token)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var response = await WorkloadCredential.SignAsync(_controlPlane, WorkloadCredential.Csr(key, Orders), token);
        Assert.Equal(Orders, response.SpiffeId);
    }

    private Task AssertSignRefusedAsync(byte[] csr, string token, StatusCode code, string loggedCode, string reason) =>
        AssertRefusedAsync(() => WorkloadCredential.SignAsync(_controlPlane, csr, token), code, reason,
            SignRefused + $"code={loggedCode} ", secret: token);

    private Task AssertRenewRefusedAsync(X509Certificate2? clientCertificate, string? csrSpiffeId, StatusCode code, string loggedCode, string reason)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = WorkloadCredential.Csr(key, csrSpiffeId);
        return AssertRefusedAsync(() => WorkloadCredential.RenewAsync(_controlPlane, clientCertificate, csr), code, reason,
            RenewRefused + $"code={loggedCode} ", secret: null);
    }

    private async Task AssertTokenRefusedAsync(CreateJoinTokenRequest request, string reason)
    {
        using var operatorCertificate = _controlPlane.OperatorCertificate;
        using var channel = _controlPlane.Channel(operatorCertificate);
        await AssertRefusedAsync(async () => await new IdentityAdmin.IdentityAdminClient(channel).CreateJoinTokenAsync(request),
            StatusCode.InvalidArgument, reason, "join token refused ", secret: null);
    }

    /// <summary>
    /// The call fails with <paramref name="code"/> and a message containing <paramref name="reason"/>, and the control
    /// plane logs exactly one refusal line for it (printed after the call started), with the reason and without the secret.
    /// </summary>
    private async Task AssertRefusedAsync(Func<Task> call, StatusCode code, string reason, string logPrefix, string? secret)
    {
        var process = _controlPlane.Process;
        var mark = process.LineCount;

        var e = await Assert.ThrowsAsync<RpcException>(call);

        Assert.Equal(code, e.StatusCode);
        Assert.Contains(reason, e.Status.Detail, StringComparison.Ordinal);
        var line = await process.WaitForLineAsync(l => l.Contains(logPrefix, StringComparison.Ordinal), logPrefix, TimeSpan.FromSeconds(10), after: mark);
        Assert.Contains(reason, line, StringComparison.Ordinal);
        Assert.Single(process.Lines.Skip(mark), l => l.Contains(" refused ", StringComparison.Ordinal));
        if (!string.IsNullOrEmpty(secret))
        {
            Assert.DoesNotContain(secret, line, StringComparison.Ordinal);
        }
    }
}
