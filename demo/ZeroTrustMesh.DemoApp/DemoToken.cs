using System.CommandLine;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using ZeroTrustMesh.CommandLine;

namespace ZeroTrustMesh.DemoApp;

/// <summary>
/// <c>ztm-demo-app token</c>: prints a JWT (ES256) signed with a demo key, by default the quickstart's stand-in issuer
/// (<c>examples/quickstart/demo-jwt-signing-key.pem</c>, whose public half is the inline JWKS of
/// <c>examples/policies/quickstart.yaml</c>), so the quickstart can show a token-carrying call without a real identity
/// provider. The key is public on purpose: a demo, never a credential.
/// </summary>
internal static class DemoToken
{
    public const string DefaultKey = "examples/quickstart/demo-jwt-signing-key.pem";
    public const string DefaultIssuer = "https://auth.shop.example";
    public const string DefaultKeyId = "quickstart";

    public static Command Command()
    {
        var scope = new Option<string>("--scope") { Description = "The scope claim: space-separated scopes, e.g. 'read:payments write:payments'", DefaultValueFactory = _ => "" };
        var subject = new Option<string>("--subject") { Description = "The sub claim (the end user)", DefaultValueFactory = _ => "demo-user" };
        var audience = new Option<string>("--audience") { Description = "The aud claim", DefaultValueFactory = _ => "payments" };
        var issuer = new Option<string>("--issuer") { Description = "The iss claim", DefaultValueFactory = _ => DefaultIssuer };
        var key = new Option<string>("--key") { Description = "PEM file with the EC P-256 signing key", DefaultValueFactory = _ => DefaultKey };
        var keyId = new Option<string>("--kid") { Description = "The key id in the token header (the JWKS key's kid)", DefaultValueFactory = _ => DefaultKeyId };
        var ttl = CommandLineOptions.Duration("--ttl", "How long the token is valid", "10m");

        var command = new Command("token", "Print a demo JWT signed with a demo key (the quickstart's stand-in issuer by default)")
        {
            scope, subject, audience, issuer, key, keyId, ttl,
        };
        command.SetAction(result =>
        {
            var path = result.GetValue(key)!;
            string pem;
            try
            {
                pem = File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return Fail($"--key {path}: {e.Message}");
            }
            using var ecdsa = ECDsa.Create();
            try
            {
                ecdsa.ImportFromPem(pem);
            }
            catch (ArgumentException e)
            {
                return Fail($"--key {path}: no EC private key in PEM form ({e.Message})");
            }
            if (ecdsa.KeySize != 256)
            {
                return Fail($"--key {path}: an EC P-256 key is needed for ES256, not a {ecdsa.KeySize}-bit one");
            }
            Console.Out.WriteLine(Mint(ecdsa, result.GetValue(keyId)!, result.GetValue(issuer)!, result.GetValue(audience)!,
                result.GetValue(subject)!, result.GetValue(scope)!, DateTimeOffset.UtcNow, result.GetValue(ttl)));
            return 0;
        });
        return command;
    }

    /// <summary>A compact JWS: ES256 over <c>iss, sub, aud, scope, iat, nbf, exp</c>.</summary>
    public static string Mint(ECDsa key, string keyId, string issuer, string audience, string subject, string scope, DateTimeOffset now, TimeSpan ttl)
    {
        var claims = new Dictionary<string, object> { ["sub"] = subject };
        if (scope.Length > 0)
        {
            claims["scope"] = scope;
        }
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            Claims = claims,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = now.Add(ttl).UtcDateTime,
            SigningCredentials = new SigningCredentials(new ECDsaSecurityKey(key) { KeyId = keyId }, SecurityAlgorithms.EcdsaSha256),
        });
    }

    private static int Fail(string error)
    {
        Console.Error.WriteLine($"{DemoHost.Program} token: {error}");
        return 1;
    }
}
