using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.Cli;

/// <summary><c>ztmctl token create</c>: a single-use join token for one workload identity.</summary>
internal static class TokenCommands
{
    public static Command Command()
    {
        var ns = new Option<string>("--namespace", "-n") { Description = "Namespace of the workload", Required = true };
        var sa = new Option<string>("--service-account", "-s") { Description = "Service account of the workload", Required = true };
        var ttl = CommandLineOptions.Duration("--ttl", "How long the token can be used", "10m");

        var create = new Command("create", "Mint a single-use join token for spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>") { ns, sa, ttl };
        create.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var client = new IdentityAdmin.IdentityAdminClient(channel);
            var response = await client.CreateJoinTokenAsync(new CreateJoinTokenRequest
            {
                Namespace = parse.GetValue(ns)!,
                ServiceAccount = parse.GetValue(sa)!,
                TtlSeconds = (uint)Math.Ceiling(parse.GetValue(ttl).TotalSeconds),
            }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);

            var expires = response.ExpiresAt.ToDateTimeOffset();
            switch (parse.GetValue(Ztmctl.OutputOption))
            {
                case "json":
                    Console.WriteLine(JsonSerializer.Serialize(new JoinTokenOutput(response.Token, response.SpiffeId, expires), CliJson.Default.JoinTokenOutput));
                    break;
                case "token":
                    Console.WriteLine(response.Token);
                    break;
                default:
                    Console.WriteLine($"{"TOKEN",-50}  {"SPIFFE ID",-50}  EXPIRES");
                    Console.WriteLine($"{response.Token,-50}  {response.SpiffeId,-50}  {expires:yyyy-MM-ddTHH:mm:ssZ}");
                    break;
            }
            return 0;
        }, cancellation));

        return new Command("token", "Join tokens: how a workload outside Kubernetes proves its identity once") { create };
    }
}

internal sealed record JoinTokenOutput(
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("spiffeId")] string SpiffeId,
    [property: JsonPropertyName("expiresAt")] DateTimeOffset ExpiresAt);

[JsonSerializable(typeof(JoinTokenOutput))]
internal sealed partial class CliJson : JsonSerializerContext;
