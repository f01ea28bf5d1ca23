using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Grpc.Net.Client;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.Cli;

/// <summary><c>ztmctl revoke</c> and <c>ztmctl get revocations</c>: certificates sidecars refuse and the CA will not renew.</summary>
internal static class RevocationCommands
{
    public static Command Revoke()
    {
        var serial = new Option<string?>("--serial") { Description = "Serial of one certificate, in hex (as the issuance log, ztmctl status -o json or a sidecar's /config_dump show it)" };
        var spiffeId = new Option<string?>("--spiffe-id") { Description = "A workload SPIFFE ID: every certificate of it issued until now" };
        var reason = new Option<string?>("--reason") { Description = "Why, for the audit log and listings" };
        var command = new Command("revoke", "Revoke a certificate (--serial) and/or every certificate of a SPIFFE ID issued until now (--spiffe-id)") { serial, spiffeId, reason };
        command.SetAction((parse, cancellation) =>
        {
            if (parse.GetValue(serial) is null && parse.GetValue(spiffeId) is null)
            {
                return Task.FromResult(Ztmctl.Fail(Ztmctl.UsageError, "revoke needs --serial HEX or --spiffe-id spiffe://… (or both)"));
            }
            return Ztmctl.CallAsync(parse, async (channel, ct) =>
            {
                var response = await new IdentityAdmin.IdentityAdminClient(channel).RevokeAsync(new RevokeRequest
                {
                    Serial = parse.GetValue(serial) ?? "",
                    SpiffeId = parse.GetValue(spiffeId) ?? "",
                    Reason = parse.GetValue(reason) ?? "",
                }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
                var entries = response.Revocations.Select(Output).ToList();
                if (parse.GetValue(Ztmctl.OutputOption) == "json")
                {
                    Console.WriteLine(JsonSerializer.Serialize(new RevokeOutput(response.Version, response.Changed, entries), RevocationJson.Default.RevokeOutput));
                    return 0;
                }
                foreach (var entry in entries)
                {
                    Console.WriteLine($"revoked {Subject(entry)} (dropped after {entry.ExpiresAt:yyyy-MM-ddTHH:mm:ssZ}, when every certificate it covers has expired)");
                }
                Console.WriteLine(response.Changed ? $"config version {response.Version}" : $"already revoked; config version {response.Version}");
                return 0;
            }, cancellation);
        });
        return command;
    }

    /// <summary><c>ztmctl get revocations</c>.</summary>
    public static async Task<int> ListAsync(ParseResult parse, GrpcChannel channel, CancellationToken cancellation)
    {
        var response = await new IdentityAdmin.IdentityAdminClient(channel).ListRevocationsAsync(new ListRevocationsRequest(),
            deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: cancellation);
        var entries = response.Revocations.Select(Output).ToList();
        if (parse.GetValue(Ztmctl.OutputOption) == "json")
        {
            Console.WriteLine(JsonSerializer.Serialize(new RevocationsOutput(response.Version, entries), RevocationJson.Default.RevocationsOutput));
            return 0;
        }
        Console.WriteLine($"{"REVOKED",-70} {"AT",-21} {"UNTIL",-21} REASON");
        foreach (var e in entries)
        {
            Console.WriteLine($"{Subject(e),-70} {e.RevokedAt:yyyy-MM-ddTHH:mm:ssZ}  {e.ExpiresAt:yyyy-MM-ddTHH:mm:ssZ}  {e.Reason}");
        }
        Console.WriteLine($"{entries.Count} revocation(s), config version {response.Version}");
        return 0;
    }

    private static RevocationOutput Output(Revocation r) => new(
        r.Serial.Length > 0 ? r.Serial : null,
        r.SpiffeId.Length > 0 ? r.SpiffeId : null,
        r.IssuedBefore?.ToDateTimeOffset(),
        r.RevokedAt.ToDateTimeOffset(),
        r.ExpiresAt.ToDateTimeOffset(),
        r.Reason);

    private static string Subject(RevocationOutput r) =>
        r.Serial is not null ? $"serial {r.Serial}" : $"{r.SpiffeId} issued before {r.IssuedBefore:yyyy-MM-ddTHH:mm:ssZ}";
}

internal sealed record RevocationOutput(string? Serial, string? SpiffeId, DateTimeOffset? IssuedBefore, DateTimeOffset RevokedAt, DateTimeOffset ExpiresAt, string Reason);

internal sealed record RevokeOutput(string Version, bool Changed, IReadOnlyList<RevocationOutput> Revocations);

internal sealed record RevocationsOutput(string Version, IReadOnlyList<RevocationOutput> Revocations);

[JsonSerializable(typeof(RevokeOutput))]
[JsonSerializable(typeof(RevocationsOutput))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class RevocationJson : JsonSerializerContext;
