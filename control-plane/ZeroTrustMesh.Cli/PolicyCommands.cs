using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.Cli;

/// <summary><c>ztmctl apply | get | delete | status | policy test</c>: policy resources on the control plane.</summary>
internal static class PolicyCommands
{
    public static IEnumerable<Command> Commands()
    {
        yield return Apply();
        yield return Get();
        yield return Delete();
        yield return Status();
        yield return RevocationCommands.Revoke();
        yield return new Command("policy", "Ask the live policy; least privilege from traffic") { Test(), LeastPrivilegeCommands.Suggest(), LeastPrivilegeCommands.AuditReport() };
    }

    private static Command Apply()
    {
        var file = new Option<string[]>("--filename", "-f") { Description = "A YAML file or a directory of them (repeatable); '-' reads stdin", Required = true };
        var command = new Command("apply", "Validate and store policy resources; all or nothing") { file };
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var client = new PolicyAdmin.PolicyAdminClient(channel);
            var sources = new List<(string Name, string Yaml)>();
            foreach (var path in parse.GetValue(file)!)
            {
                if (path == "-")
                {
                    sources.Add(("-", await Console.In.ReadToEndAsync(ct)));
                }
                else if (Directory.Exists(path))
                {
                    foreach (var f in Directory.EnumerateFiles(path).Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
                    {
                        sources.Add((f, await File.ReadAllTextAsync(f, ct)));
                    }
                }
                else if (File.Exists(path))
                {
                    sources.Add((path, await File.ReadAllTextAsync(path, ct)));
                }
                else
                {
                    return Ztmctl.Fail(Ztmctl.Refused, $"{path}: no such file or directory");
                }
            }
            // One request per file would apply file by file; join them so the whole set is validated together.
            var yaml = string.Join("\n---\n", sources.Select(s => s.Yaml));
            var source = string.Join(",", sources.Select(s => Path.GetFileName(s.Name)));
            var bytes = System.Text.Encoding.UTF8.GetByteCount(yaml);
            if (bytes > PolicyAdminLimits.MaxApplyBytes)
            {
                return Ztmctl.Fail(Ztmctl.Refused, PolicyAdminLimits.TooLarge(source, bytes)); // refused here rather than after the upload
            }
            var response = await client.ApplyAsync(new ApplyRequest { Source = source, Yaml = yaml },
                deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct);
            if (parse.GetValue(Ztmctl.OutputOption) == "json")
            {
                Console.WriteLine(JsonSerializer.Serialize(new ApplyOutput(response.Version, [.. response.Applied], [.. response.Warnings]), PolicyJson.Default.ApplyOutput));
            }
            else
            {
                foreach (var line in response.Applied)
                {
                    Console.WriteLine(line);
                }
                Console.WriteLine($"policy version {response.Version}");
            }
            // As kubectl prints admission warnings: on stderr, the apply still succeeded.
            foreach (var warning in response.Warnings)
            {
                Console.Error.WriteLine($"Warning: {warning}");
            }
            return 0;
        }, cancellation));
        return command;
    }

    private static Command Get()
    {
        var kind = new Argument<string?>("kind") { Description = $"{Policy.Kinds.PolicyKinds.Builtin.Names} (all when omitted), or revocations", Arity = ArgumentArity.ZeroOrOne };
        var name = new Argument<string?>("name") { Arity = ArgumentArity.ZeroOrOne };
        var ns = new Option<string?>("--namespace", "-n") { Description = "Only this namespace" };
        var command = new Command("get", "List stored policy resources (-o yaml shows them whole), or the revocations in force") { kind, name, ns };
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            if (string.Equals(parse.GetValue(kind), "revocations", StringComparison.OrdinalIgnoreCase))
            {
                return await RevocationCommands.ListAsync(parse, channel, ct);
            }
            var response = await new PolicyAdmin.PolicyAdminClient(channel).ListAsync(
                new ListRequest { Kind = parse.GetValue(kind) ?? "", Name = parse.GetValue(name) ?? "", Namespace = parse.GetValue(ns) ?? "" },
                deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
            if (parse.GetValue(name) is { } n && response.Resources.Count == 0)
            {
                return Ztmctl.Fail(Ztmctl.Refused, $"{parse.GetValue(kind)} '{n}' not found");
            }
            switch (parse.GetValue(Ztmctl.OutputOption))
            {
                case "json":
                    Console.WriteLine(JsonSerializer.Serialize(new ListOutput(response.Version, [.. response.Resources.Select(r => new ResourceOutput(r.Key, r.Yaml))]), PolicyJson.Default.ListOutput));
                    break;
                case "yaml":
                    Console.WriteLine(string.Join("---\n", response.Resources.Select(r => r.Yaml)));
                    break;
                default:
                    Console.WriteLine($"{"KIND",-24} {"NAMESPACE",-16} NAME");
                    foreach (var parts in response.Resources.Select(r => r.Key.Split('/')))
                    {
                        Console.WriteLine($"{parts[0],-24} {parts[1],-16} {parts[2]}");
                    }
                    break;
            }
            return 0;
        }, cancellation));
        return command;
    }

    private static Command Delete()
    {
        var kind = new Argument<string>("kind") { Description = $"{Policy.Kinds.PolicyKinds.Builtin.Names}; any case, or plural, as kubectl" };
        var name = new Argument<string>("name");
        var ns = new Option<string?>("--namespace", "-n") { Description = "Namespace (default: default)" };
        var command = new Command("delete", "Delete one policy resource") { kind, name, ns };
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var response = await new PolicyAdmin.PolicyAdminClient(channel).DeleteAsync(
                new DeleteRequest { Kind = parse.GetValue(kind)!, Name = parse.GetValue(name)!, Namespace = parse.GetValue(ns) ?? "" },
                deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
            Console.WriteLine($"{parse.GetValue(kind)}/{parse.GetValue(ns) ?? "default"}/{parse.GetValue(name)} deleted");
            Console.WriteLine($"policy version {response.Version}");
            return 0;
        }, cancellation));
        return command;
    }

    private static Command Status()
    {
        var command = new Command("status", "Every sidecar: identity, config version applied or NACKed, certificate expiry, last seen");
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var response = await new PolicyAdmin.PolicyAdminClient(channel).StatusAsync(new StatusRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
            var rows = response.Sidecars.Select(s => new SidecarOutput(s.SpiffeId, s.Service, s.Connected, s.VersionApplied, s.VersionSent,
                s.NackError.Length > 0 ? s.NackError : null, s.CertificateExpiresAt.ToDateTimeOffset(), s.LastSeen.ToDateTimeOffset(), s.Serial,
                s.CertificateRoot.Length > 0 ? s.CertificateRoot : null)).ToList();
            if (parse.GetValue(Ztmctl.OutputOption) == "json")
            {
                Console.WriteLine(JsonSerializer.Serialize(new StatusOutput(response.Version, rows, (int)response.Revocations), PolicyJson.Default.StatusOutput));
                return 0;
            }
            Console.WriteLine($"config version {response.Version}");
            Console.WriteLine($"revocations {response.Revocations} (ztmctl get revocations)");
            Console.WriteLine($"{"SPIFFE ID",-45} {"STATE",-13} {"APPLIED",-8} {"CERT EXPIRES",-21} {"LAST SEEN",-21} NACK");
            foreach (var s in rows)
            {
                var state = !s.Connected ? "disconnected" : s.Nack is not null ? "nacked" : s.Applied == s.Sent ? "synced" : "pending";
                Console.WriteLine($"{s.SpiffeId,-45} {state,-13} {s.Applied,-8} {s.CertificateExpiresAt:yyyy-MM-ddTHH:mm:ssZ}  {s.LastSeen:yyyy-MM-ddTHH:mm:ssZ}  {s.Nack}");
            }
            return 0;
        }, cancellation));
        return command;
    }

    private static Command Test()
    {
        var from = new Option<string>("--from") { Description = "The caller's SPIFFE ID (omit for a caller without a certificate)" };
        var to = new Option<string>("--to") { Description = "Destination service: orders or orders.shop", Required = true };
        var method = new Option<string>("--method", "-X") { DefaultValueFactory = _ => "GET" };
        var path = new Option<string>("--path") { DefaultValueFactory = _ => "/" };
        var port = new Option<int>("--port") { Description = "The destination's application port" };
        var header = new Option<string[]>("--header", "-H") { Description = "name: value (repeatable)" };
        var jwt = new Option<string?>("--jwt") { Description = "A bearer token whose claims the request carries (its signature is not checked here)" };
        var sourceIp = new Option<string?>("--source-ip");
        var tcp = new Option<bool>("--tcp")
        {
            Description = "Evaluate a connection to a TCP or L4 port (needs --port), as the sidecar authorizes one: no method, path, headers or JWT",
        };
        var command = new Command("test", "Evaluate a hypothetical request against the live policy and show the rules that decided it")
        {
            from, to, method, path, port, header, jwt, sourceIp, tcp,
        };
        command.SetAction((parse, cancellation) => Ztmctl.CallAsync(parse, async (channel, ct) =>
        {
            var connection = parse.GetValue(tcp);
            var request = new PolicyTestRequest
            {
                From = parse.GetValue(from) ?? "",
                To = parse.GetValue(to)!,
                // With --tcp the defaults are not sent; a method or path typed anyway is refused by the control plane.
                Method = connection && parse.GetResult(method) is not { Implicit: false } ? "" : parse.GetValue(method)!,
                Path = connection && parse.GetResult(path) is not { Implicit: false } ? "" : parse.GetValue(path)!,
                Connection = connection,
                Port = (uint)parse.GetValue(port),
                Jwt = parse.GetValue(jwt) ?? "",
                SourceIp = parse.GetValue(sourceIp) ?? "",
            };
            foreach (var h in parse.GetValue(header) ?? [])
            {
                var colon = h.IndexOf(':', StringComparison.Ordinal);
                if (colon <= 0)
                {
                    return Ztmctl.Fail(Ztmctl.UsageError, $"--header '{h}' is not 'name: value'");
                }
                request.Headers[h[..colon].Trim()] = h[(colon + 1)..].Trim();
            }
            var response = await new PolicyAdmin.PolicyAdminClient(channel).TestAsync(request, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
            if (parse.GetValue(Ztmctl.OutputOption) == "json")
            {
                Console.WriteLine(JsonSerializer.Serialize(new TestOutput(response.Allowed, response.Policy.Length > 0 ? response.Policy : null, response.Rule, response.Reason, [.. response.Trail], response.Version), PolicyJson.Default.TestOutput));
            }
            else
            {
                Console.WriteLine($"{(response.Allowed ? "ALLOW" : "DENY")}: {response.Reason}");
                foreach (var line in response.Trail)
                {
                    Console.WriteLine($"  {line}");
                }
                Console.WriteLine($"policy version {response.Version}");
            }
            // Scripts can branch on the verdict: 0 allowed, 4 denied.
            return response.Allowed ? 0 : Ztmctl.Denied;
        }, cancellation));
        return command;
    }
}

internal sealed record ApplyOutput(string Version, IReadOnlyList<string> Applied, IReadOnlyList<string> Warnings);

internal sealed record ResourceOutput(string Key, string Yaml);

internal sealed record ListOutput(string Version, IReadOnlyList<ResourceOutput> Resources);

/// <param name="CertificateRoot">The SHA-256 fingerprint of the current bundle's root the certificate chains to; null: none.</param>
internal sealed record SidecarOutput(string SpiffeId, string Service, bool Connected, string Applied, string Sent, string? Nack, DateTimeOffset CertificateExpiresAt, DateTimeOffset LastSeen, string Serial, string? CertificateRoot);

internal sealed record StatusOutput(string Version, IReadOnlyList<SidecarOutput> Sidecars, int Revocations);

internal sealed record TestOutput(bool Allowed, string? Policy, int Rule, string Reason, IReadOnlyList<string> Trail, string Version);

[JsonSerializable(typeof(ApplyOutput))]
[JsonSerializable(typeof(ListOutput))]
[JsonSerializable(typeof(StatusOutput))]
[JsonSerializable(typeof(TestOutput))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class PolicyJson : JsonSerializerContext;
