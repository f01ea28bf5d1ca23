using System.Collections.Immutable;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Primitives;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.Authentication;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Tests.Authentication;

/// <summary>JWT validation with keys made here: signature, issuer, audience, lifetime on a fake clock, claims; remote JWKS fetched, refreshed and kept.</summary>
public sealed class JwtAuthenticatorTests : IDisposable
{
    private const string Issuer = "https://auth.shop.example";
    private static readonly WorkloadRef Orders = new("shop", "orders");

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly TestKey _key = new("k1");
    private readonly JwksCache _cache;

    public JwtAuthenticatorTests() =>
        _cache = new JwksCache(new JwksOptions { FetchTimeout = TimeSpan.FromSeconds(5) }, _time, NullLogger<JwksCache>.Instance);

    public void Dispose()
    {
        _cache.Dispose();
        _key.Dispose();
    }

    private IRequestAuthenticator Compile(string? jwks = null, string? jwksUri = null, params string[] audiences) =>
        Compile(_cache, jwks, jwksUri, audiences);

    private IRequestAuthenticator Compile(JwksCache cache, string? jwks = null, string? jwksUri = null, params string[] audiences) =>
        JwtAuthenticator.Compile(Orders, [Resource(new JwtRule(Issuer, [.. audiences], jwksUri, jwksUri is null ? jwks ?? TestKey.Jwks(_key) : null))], cache, _time);

    private static RequestAuthentication Resource(params JwtRule[] rules) =>
        new(new ResourceMetadata("jwt", "shop"), new RequestAuthenticationSpec(new WorkloadSelector("orders"), [.. rules]));

    private string Token(TestKey? key = null, string issuer = Issuer, string? audience = "orders", TimeSpan? lifetime = null, string scope = "read:orders write:orders") =>
        (key ?? _key).Token(issuer, audience, "alice", scope, _time.GetUtcNow(), lifetime ?? TimeSpan.FromMinutes(5));

    private static async Task<AuthenticationResult> Authenticate(IRequestAuthenticator authenticator, string? token) =>
        await authenticator.AuthenticateAsync(token is null ? StringValues.Empty : new StringValues("Bearer " + token), CancellationToken.None);

    [Fact]
    public async Task A_valid_token_yields_its_claims_for_the_policy()
    {
        var result = await Authenticate(Compile(audiences: "orders"), Token());
        Assert.False(result.Failed, result.Error);
        Assert.True(result.Claims!.TryGetValue("iss", 0, out var iss));
        Assert.Equal(Issuer, iss);
        Assert.True(result.Claims.TryGetValue("sub", 0, out var sub));
        Assert.Equal("alice", sub);
        Assert.True(result.Claims.TryGetValue("scope", 0, out var scope));
        Assert.Equal("read:orders write:orders", scope);
    }

    [Fact]
    public async Task A_valid_token_is_kept_for_the_app_only_when_its_rule_says_forward_original_token()
    {
        Assert.False((await Authenticate(Compile(), Token())).ForwardOriginalToken);

        var forwarding = JwtAuthenticator.Compile(Orders,
            [Resource(new JwtRule(Issuer, [], null, TestKey.Jwks(_key)) { ForwardOriginalToken = true })], _cache, _time);
        var result = await Authenticate(forwarding, Token());
        Assert.False(result.Failed, result.Error);
        Assert.True(result.ForwardOriginalToken);
    }

    [Fact]
    public async Task No_bearer_token_passes_unauthenticated_and_other_schemes_are_not_looked_at()
    {
        var authenticator = Compile();
        Assert.Equal(AuthenticationResult.Anonymous, await Authenticate(authenticator, null));
        Assert.Equal(AuthenticationResult.Anonymous, await authenticator.AuthenticateAsync(new StringValues("Basic YTpi"), CancellationToken.None));
    }

    [Fact]
    public async Task Expiry_is_checked_on_the_sidecar_clock_with_a_small_skew()
    {
        var authenticator = Compile();
        var token = Token(lifetime: TimeSpan.FromMinutes(1));
        _time.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(20)); // expired, but within the skew
        Assert.False((await Authenticate(authenticator, token)).Failed);
        _time.Advance(TimeSpan.FromSeconds(20));
        Assert.Equal("Jwt is expired", (await Authenticate(authenticator, token)).Error);
    }

    [Fact]
    public async Task Wrong_signature_issuer_audience_and_garbage_are_refused_with_the_reason()
    {
        using var other = new TestKey("k1");
        var authenticator = Compile(audiences: "orders");
        Assert.Equal("Jwt verification fails", (await Authenticate(authenticator, Token(other))).Error);
        Assert.Equal("Jwt issuer is not configured", (await Authenticate(authenticator, Token(issuer: "https://evil.example"))).Error);
        Assert.Equal("Audiences in Jwt are not allowed", (await Authenticate(authenticator, Token(audience: "payments"))).Error);
        Assert.Equal("Jwt is not in the form of Header.Payload.Signature", (await Authenticate(authenticator, "not-a-jwt")).Error);
        var token = Token();
        var tampered = token[..token.LastIndexOf('.')] + ".AAAA";
        Assert.Equal("Jwt verification fails", (await Authenticate(authenticator, tampered)).Error);
        // An unsigned token ('alg: none') is never accepted.
        var parts = token.Split('.');
        var none = Base64UrlEncoder.Encode("""{"alg":"none","typ":"JWT"}""") + "." + parts[1] + ".";
        Assert.True((await Authenticate(authenticator, none)).Failed);
    }

    [Fact]
    public void An_unusable_inline_jwks_refuses_the_snapshot()
    {
        var error = Assert.Throws<ArgumentException>(() => Compile(jwks: """{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"""));
        Assert.Contains("jwtRules[0].jwks", error.Message, StringComparison.Ordinal);
        Assert.Same(NoRequestAuthentication.Instance, JwtAuthenticator.Compile(new WorkloadRef("shop", "payments"), [Resource(new JwtRule(Issuer, [], null, TestKey.Jwks(_key)))], _cache, _time));
    }

    [Fact]
    public async Task A_remote_jwks_is_fetched_kept_when_a_refresh_fails_and_refetched_for_an_unknown_key_id()
    {
        var served = new JwksServer();
        await using var app = await served.StartAsync();
        served.Status = HttpStatusCode.ServiceUnavailable;
        var authenticator = Compile(jwksUri: served.Uri + "/jwks");

        // Cannot be fetched: tokens of the issuer are refused with the reason, nothing crashes.
        var failed = await Authenticate(authenticator, Token());
        Assert.Contains("could not be fetched: HTTP 503", failed.Error, StringComparison.Ordinal);

        served.Status = HttpStatusCode.OK;
        served.Jwks = TestKey.Jwks(_key);
        _time.Advance(TimeSpan.FromSeconds(6)); // past the retry interval after a failure
        Assert.False((await Authenticate(authenticator, Token())).Failed);

        // The issuer rotates to k2: the unknown kid triggers one re-fetch (after the minimum interval).
        using var rotated = new TestKey("k2");
        served.Jwks = TestKey.Jwks(_key, rotated);
        _time.Advance(TimeSpan.FromSeconds(31));
        Assert.False((await Authenticate(authenticator, Token(rotated))).Failed);

        // A refresh that fails keeps the last good keys.
        served.Status = HttpStatusCode.InternalServerError;
        _time.Advance(TimeSpan.FromMinutes(21));
        var fetches = served.Requests;
        Assert.False((await Authenticate(authenticator, Token(rotated))).Failed);
        await served.WaitForRequestsAsync(fetches + 1);
        Assert.False((await Authenticate(authenticator, Token())).Failed);
    }

    [Fact]
    public async Task A_remote_jwks_over_https_is_trusted_only_through_the_ca_bundle_the_sidecar_reads()
    {
        // The sidecar keeps the OS's CA store out of its handshakes and gives its JWKS client the OS bundle file
        // instead (SystemTrustStore): here a bundle with the JWKS server's CA, one without it, and none at all.
        using var ca = TestCa.Create("jwks test CA");
        using var otherCa = TestCa.Create("some other CA");
        var directory = Directory.CreateTempSubdirectory("ztm-jwks-");
        try
        {
            var withCa = Path.Combine(directory.FullName, "with.pem");
            var withoutCa = Path.Combine(directory.FullName, "without.pem");
            await File.WriteAllTextAsync(withCa, otherCa.Certificate.ExportCertificatePem() + "\n" + ca.Certificate.ExportCertificatePem());
            await File.WriteAllTextAsync(withoutCa, otherCa.Certificate.ExportCertificatePem());
            var missing = Path.Combine(directory.FullName, "missing.pem");

            using var serverCertificate = ca.IssueServerCertificate(IPAddress.Loopback);
            var served = new JwksServer { Jwks = TestKey.Jwks(_key) };
            await using var app = await served.StartAsync(serverCertificate);
            Assert.StartsWith("https://", served.Uri, StringComparison.Ordinal);

            async Task<AuthenticationResult> AuthenticateWithBundles(params string[] bundleFiles)
            {
                using var cache = new JwksCache(new JwksOptions
                {
                    FetchTimeout = TimeSpan.FromSeconds(5),
                    HttpsTrust = () => SystemTrustStore.PublicEndpointPolicy(new SystemTrustStore.Sources(null, null), bundleFiles),
                }, _time, NullLogger<JwksCache>.Instance);
                return await Authenticate(Compile(cache, jwksUri: served.Uri + "/jwks"), Token());
            }

            var trusted = await AuthenticateWithBundles(missing, withCa); // the first bundle that exists
            Assert.False(trusted.Failed, trusted.Error);
            Assert.True(trusted.Claims!.TryGetValue("sub", 0, out var subject));
            Assert.Equal("alice", subject);

            var untrusted = await AuthenticateWithBundles(withoutCa, withCa);
            Assert.True(untrusted.Failed);
            Assert.Contains("could not be fetched: TLS: The remote certificate is invalid", untrusted.Error, StringComparison.Ordinal);

            var noBundle = await AuthenticateWithBundles(missing);
            Assert.Contains($"no CA certificates for HTTPS outside the mesh in {missing}; set SSL_CERT_FILE to a CA bundle", noBundle.Error, StringComparison.Ordinal);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    /// <summary>An EC P-256 signing key, its JWKS entry, and tokens signed with it.</summary>
    private sealed class TestKey(string kid) : IDisposable
    {
        private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        public string Token(string issuer, string? audience, string subject, string scope, DateTimeOffset now, TimeSpan lifetime) =>
            new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
            {
                Issuer = issuer,
                Audience = audience,
                Claims = new Dictionary<string, object> { ["sub"] = subject, ["scope"] = scope },
                IssuedAt = now.UtcDateTime,
                NotBefore = now.UtcDateTime,
                Expires = (now + lifetime).UtcDateTime,
                SigningCredentials = new SigningCredentials(new ECDsaSecurityKey(_key) { KeyId = _kid }, SecurityAlgorithms.EcdsaSha256),
            });

        public static string Jwks(params TestKey[] keys) =>
            $$"""{"keys":[{{string.Join(",", keys.Select(k =>
            {
                var p = k._key.ExportParameters(false);
                return $$"""{"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":"{{k._kid}}","x":"{{Base64UrlEncoder.Encode(p.Q.X)}}","y":"{{Base64UrlEncoder.Encode(p.Q.Y)}}"}""";
            }))}}]}""";

        private readonly string _kid = kid;

        public void Dispose() => _key.Dispose();
    }

    /// <summary>A CA outside the mesh, as a public JWKS server's would be, and a server certificate it issues.</summary>
    private sealed class TestCa(X509Certificate2 certificate, ECDsa key) : IDisposable
    {
        public X509Certificate2 Certificate => certificate;

        public static TestCa Create(string name)
        {
            var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
            return new TestCa(request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1)), key);
        }

        public X509Certificate2 IssueServerCertificate(IPAddress address)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=jwks", key, HashAlgorithmName.SHA256);
            var names = new SubjectAlternativeNameBuilder();
            names.AddIpAddress(address);
            request.CertificateExtensions.Add(names.Build());
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
            using var issued = request.Create(certificate, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(30), [1, 2, 3, 4, 5, 6, 7, 8]);
            return issued.CopyWithPrivateKey(key);
        }

        public void Dispose()
        {
            certificate.Dispose();
            key.Dispose();
        }
    }

    /// <summary>A JWKS endpoint on loopback whose answer the test changes.</summary>
    private sealed class JwksServer
    {
        private int _requests;
        private readonly SemaphoreSlim _served = new(0);

        public volatile string Jwks = """{"keys":[]}""";

        public HttpStatusCode Status { get; set; } = HttpStatusCode.OK;

        public string Uri { get; private set; } = "";

        public int Requests => Volatile.Read(ref _requests);

        public async Task<WebApplication> StartAsync(X509Certificate2? serverCertificate = null)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseKestrelHttpsConfiguration();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen =>
            {
                if (serverCertificate is not null)
                {
                    listen.UseHttps(serverCertificate);
                }
            }));
            var app = builder.Build();
            app.MapGet("/jwks", async context =>
            {
                context.Response.StatusCode = (int)Status;
                await context.Response.WriteAsync(Jwks);
                Interlocked.Increment(ref _requests);
                _served.Release();
            });
            await app.StartAsync();
            Uri = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
            return app;
        }

        public async Task WaitForRequestsAsync(int count)
        {
            while (Requests < count)
            {
                Assert.True(await _served.WaitAsync(TimeSpan.FromSeconds(10)), "the JWKS endpoint was not asked again");
            }
        }
    }
}
