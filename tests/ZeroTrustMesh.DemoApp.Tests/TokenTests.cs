using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Xunit.Abstractions;
using ZeroTrustMesh.DemoApp.Tests.Infrastructure;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.DemoApp.Tests;

/// <summary><c>ztm-demo-app token</c>: the quickstart's demo tokens validate against the quickstart policy's inline JWKS.</summary>
public sealed partial class TokenTests(ITestOutputHelper output)
{
    private static readonly string RepoRoot = typeof(TokenTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepoRoot").Value!;

    private async Task<(int ExitCode, IReadOnlyList<string> Lines)> RunAsync(params string[] args)
    {
        var process = MeshProcess.Start("ztm-demo-app", DemoAppProcess.Dll, ["token", .. args], output);
        var exitCode = await process.Exited.WaitAsync(MeshProcess.DefaultTimeout);
        await process.DisposeAsync(); // waits for the output to be read to its end
        return (exitCode, process.Lines);
    }

    [Fact]
    public async Task A_minted_token_validates_against_the_quickstart_policys_jwks_with_its_scope()
    {
        var key = Path.Combine(RepoRoot, "examples", "quickstart", "demo-jwt-signing-key.pem");
        var (exitCode, lines) = await RunAsync("--scope", "read:payments write:payments", "--subject", "alice", "--key", key);

        Assert.Equal(0, exitCode);
        var token = Assert.Single(lines);
        var policy = await File.ReadAllTextAsync(Path.Combine(RepoRoot, "examples", "policies", "quickstart.yaml"));
        var jwks = new JsonWebKeySet(InlineJwks().Match(policy).Groups["jwks"].Value);
        var result = await new JsonWebTokenHandler { MapInboundClaims = false }.ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = "https://auth.shop.example",
            ValidAudience = "payments",
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidAlgorithms = [SecurityAlgorithms.EcdsaSha256],
        });

        Assert.True(result.IsValid, result.Exception?.Message);
        Assert.Equal("read:payments write:payments", result.Claims["scope"]);
        Assert.Equal("alice", result.Claims["sub"]);
    }

    [Fact]
    public async Task A_missing_key_file_exits_1_with_one_line_saying_why()
    {
        var (exitCode, lines) = await RunAsync("--key", "/nonexistent/demo.pem");

        Assert.Equal(1, exitCode);
        Assert.StartsWith("ztm-demo-app token: --key /nonexistent/demo.pem:", Assert.Single(lines), StringComparison.Ordinal);
    }

    [GeneratedRegex(@"jwks: '(?<jwks>[^']+)'")]
    private static partial Regex InlineJwks();
}
