using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Grpc.Net.Client;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.Cli;

/// <summary><c>ztmctl ca status</c> and <c>ztmctl ca rotate</c>: the mesh CA's roots and their rotation.</summary>
internal static class CaCommands
{
    public static Command Command()
    {
        var status = new Command("status", "The CA's roots, the rotation phase, what the next step waits for, and which trust bundle and root each sidecar holds");
        status.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var response = await Client(channel).StatusAsync(new CaStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
            Print(parse, response);
            return 0;
        }, cancellation));

        var rotate = new Command("rotate", "Start a CA root rotation: prepare a new root, activate it once every sidecar trusts it, retire the old one once nothing it signed is live");
        rotate.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var response = await Client(channel).RotateAsync(new CaRotateRequest(), deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct);
            if (parse.GetValue(Ztmctl.OutputOption) == "json")
            {
                Print(parse, response);
                return 0;
            }
            var next = response.Roots.First(r => r.Role == "next");
            Console.WriteLine($"CA rotation started: root {Short(next.Fingerprint)} (not after {Time(next.NotAfter)}) is in trust bundle {response.BundleSequence}");
            Console.WriteLine($"it signs once every sidecar follows bundle {response.BundleSequence}; ztmctl ca status shows who does and what each step waits for");
            return 0;
        }, cancellation));

        return new Command("ca", "The mesh CA's roots and their rotation") { status, rotate };
    }

    private static CaAdmin.CaAdminClient Client(GrpcChannel channel) => new(channel);

    private static void Print(ParseResult parse, CaStatusResponse response)
    {
        if (parse.GetValue(Ztmctl.OutputOption) == "json")
        {
            Console.WriteLine(JsonSerializer.Serialize(Output(response), CaJson.Default.CaStatusOutput));
            return;
        }
        var since = response.PhaseSince is null ? "" : $" since {Time(response.PhaseSince)}";
        var by = response.StartedBy.Length == 0 || response.Phase == "none" ? "" : $" (started by {response.StartedBy})";
        Console.WriteLine($"phase:         {response.Phase}{since}{by}");
        Console.WriteLine($"trust bundle:  {response.BundleSequence}");
        if (response.PlugIn)
        {
            Console.WriteLine("auto rotation: off (the CA is the operator's own: --ca-cert)");
        }
        else if (response.AutoRotateAt is not null)
        {
            Console.WriteLine($"auto rotation: {Time(response.AutoRotateAt)}");
        }
        if (response.WaitingFor.Length > 0)
        {
            Console.WriteLine($"waiting for:   {response.WaitingFor}");
        }
        if (response.NextStepAt is not null)
        {
            Console.WriteLine($"next step at:  {Time(response.NextStepAt)}");
        }
        foreach (var blocker in response.BlockedBy)
        {
            Console.WriteLine($"blocked by:    {blocker}");
        }
        var live = response.Replicas.Where(r => !r.Stale).Select(r => r.Name).ToList();
        Console.WriteLine($"following:     {response.SidecarsFollowing} of {response.SidecarsCounted} sidecar(s) follow trust bundle {response.BundleSequence} (across {live.Count} replica(s): {string.Join(", ", live)})");
        foreach (var stale in response.Replicas.Where(r => r.Stale))
        {
            Console.WriteLine($"ignored:       replica {stale.Name} (its report has not changed since {Time(stale.ReportedAt)}: stopped)");
        }
        Console.WriteLine();
        Console.WriteLine($"{"ROOT",-9} {"FINGERPRINT (SHA-256)",-21} {"NOT AFTER",-20} {"IN BUNDLE",-9}  SUBJECT");
        foreach (var root in response.Roots)
        {
            Console.WriteLine($"{root.Role,-9} {Short(root.Fingerprint),-21} {Time(root.NotAfter),-20} {(root.InBundle ? "yes" : "no"),-9}  {root.Subject}");
        }
        Console.WriteLine();
        Console.WriteLine($"{"SIDECAR",-60} {"CONNECTED",-9} {"BUNDLE",-6} {"CERT ROOT",-9} {"CERT EXPIRES",-20} REPLICA");
        foreach (var sidecar in response.Sidecars)
        {
            Console.WriteLine($"{sidecar.SpiffeId,-60} {(sidecar.Connected ? "yes" : "no"),-9} {sidecar.BundleSequence,-6} {(sidecar.CertificateRoot.Length == 0 ? "-" : sidecar.CertificateRoot),-9} {Time(sidecar.CertificateExpiresAt),-20} {sidecar.Replica}");
        }
        Console.WriteLine($"{response.Sidecars.Count} sidecar(s)");
    }

    private static CaStatusOutput Output(CaStatusResponse r) => new(
        r.Phase,
        r.PhaseSince?.ToDateTimeOffset(),
        r.StartedBy.Length == 0 ? null : r.StartedBy,
        r.BundleSequence,
        r.WaitingFor.Length == 0 ? null : r.WaitingFor,
        [.. r.BlockedBy],
        r.NextStepAt?.ToDateTimeOffset(),
        r.AutoRotateAt?.ToDateTimeOffset(),
        r.PlugIn,
        r.SidecarsCounted,
        r.SidecarsFollowing,
        [.. r.Replicas.Select(x => new CaReplicaOutput(x.Name, x.BundleSequence, x.Sidecars, x.ReportedAt?.ToDateTimeOffset(), x.Stale, x.Problem.Length == 0 ? null : x.Problem))],
        [.. r.Roots.Select(x => new CaRootOutput(x.Role, x.Fingerprint, x.Subject, x.NotBefore.ToDateTimeOffset(), x.NotAfter.ToDateTimeOffset(), x.InBundle))],
        [.. r.Sidecars.Select(s => new CaSidecarOutput(s.SpiffeId, s.Connected, s.BundleSequence, s.CertificateSerial, s.CertificateExpiresAt.ToDateTimeOffset(),
            s.CertificateRoot.Length == 0 ? null : s.CertificateRoot, s.LastSeen.ToDateTimeOffset(), s.Replica.Length == 0 ? null : s.Replica))]);

    private static string Short(string fingerprint) => fingerprint.Length > 16 ? fingerprint[..16] : fingerprint;

    private static string Time(Google.Protobuf.WellKnownTypes.Timestamp timestamp) => $"{timestamp.ToDateTimeOffset():yyyy-MM-ddTHH:mm:ssZ}";
}

internal sealed record CaRootOutput(string Role, string Fingerprint, string Subject, DateTimeOffset NotBefore, DateTimeOffset NotAfter, bool InBundle);

internal sealed record CaSidecarOutput(string SpiffeId, bool Connected, ulong BundleSequence, string CertificateSerial, DateTimeOffset CertificateExpiresAt, string? CertificateRoot, DateTimeOffset LastSeen, string? Replica);

internal sealed record CaReplicaOutput(string Name, ulong BundleSequence, uint Sidecars, DateTimeOffset? ReportedAt, bool Stale, string? Problem);

internal sealed record CaStatusOutput(
    string Phase,
    DateTimeOffset? PhaseSince,
    string? StartedBy,
    ulong BundleSequence,
    string? WaitingFor,
    IReadOnlyList<string> BlockedBy,
    DateTimeOffset? NextStepAt,
    DateTimeOffset? AutoRotateAt,
    bool PlugIn,
    uint SidecarsCounted,
    uint SidecarsFollowing,
    IReadOnlyList<CaReplicaOutput> Replicas,
    IReadOnlyList<CaRootOutput> Roots,
    IReadOnlyList<CaSidecarOutput> Sidecars);

[JsonSerializable(typeof(CaStatusOutput))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class CaJson : JsonSerializerContext;
