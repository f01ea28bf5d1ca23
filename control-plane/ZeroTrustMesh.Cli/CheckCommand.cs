using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Grpc.Core;
using k8s;
using k8s.Autorest;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.Cli;

/// <summary>
/// <c>ztmctl check</c>, like <c>linkerd check</c>: one line per check, ✔ or ✘, a hint on every ✘ and the offenders
/// indented under it; exit 0 when every check passes, 1 when one fails, 3 when the control plane cannot be reached (the
/// other checks need it). What is checked:
/// 1. the control plane answers (its admin Status call, with the operator credential);
/// 2. which replica leads, as the answering one knows it (the holder of the Lease in Kubernetes; standalone the one
///    process names itself as both);
/// 3. every root of the trust bundle sidecars are given is valid, and the latest has at least <c>--ca-min-days</c> left;
///    and no CA rotation is held up (its CaAdmin status names no blocker);
/// 4. every connected sidecar ACKed the current config version (none NACKed or behind);
/// 5. every connected sidecar holds an unexpired certificate that chains to a root of the current bundle;
/// 6. with <c>--kubernetes</c> (or <c>--kubeconfig</c>): the policy CRDs are installed, established and served (a list
///    answers), and the injection webhook's <c>caBundle</c> holds exactly the current roots.
/// The Kubernetes checks use <c>--kubeconfig</c>, else <c>$KUBECONFIG</c>, else the pod's service account (ztmctl run
/// in the control plane's pod), as kubectl and the control plane do.
/// </summary>
internal static class CheckCommand
{
    public const int Failed = 1;
    public const string PolicyGroup = "security.ztm.dev";
    public const string PolicyVersion = "v1";

    public static Command Command()
    {
        var kubernetes = new Option<bool>("--kubernetes") { Description = "Also check the cluster: policy CRDs installed and served, the injection webhook's caBundle current" };
        var kubeconfig = new Option<string?>("--kubeconfig") { Description = "kubeconfig for the cluster checks (implies --kubernetes; default $KUBECONFIG, else the pod's service account)" };
        var webhook = new Option<string>("--webhook-configuration") { Description = "The MutatingWebhookConfiguration whose caBundle to check", DefaultValueFactory = _ => "ztm-sidecar-injector" };
        var minDays = new Option<int>("--ca-min-days") { Description = "Fail when the trust bundle's latest root has fewer days left", DefaultValueFactory = _ => 30 };
        var command = new Command("check", "Check the installation: control plane, CA, sidecars (and with --kubernetes the CRDs and the webhook); non-zero exit when a check fails")
        {
            kubernetes, kubeconfig, webhook, minDays,
        };
        command.SetAction((parse, cancellation) =>
        {
            if (parse.GetValue(minDays) < 0)
            {
                return Task.FromResult(Ztmctl.Fail(Ztmctl.UsageError, $"--ca-min-days {parse.GetValue(minDays)} must be 0 or more"));
            }
            var cluster = parse.GetValue(kubernetes) || parse.GetValue(kubeconfig) is not null;
            return Ztmctl.CallAsync(parse, (channel, ct) => RunAsync(
                new PolicyAdmin.PolicyAdminClient(channel), new CaAdmin.CaAdminClient(channel), $"https://{channel.Target}", cluster ? parse.GetValue(kubeconfig) ?? "" : null,
                parse.GetValue(webhook)!, parse.GetValue(minDays), ct), cancellation);
        });
        return command;
    }

    /// <param name="kubeconfig">Null: no cluster checks; empty: <c>$KUBECONFIG</c> or in-cluster.</param>
    private static async Task<int> RunAsync(PolicyAdmin.PolicyAdminClient client, CaAdmin.CaAdminClient ca, string target, string? kubeconfig, string webhook, int minDays, CancellationToken cancellation)
    {
        StatusResponse status;
        try
        {
            status = await client.StatusAsync(new StatusRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: cancellation);
        }
        catch (RpcException e)
        {
            Print(new Outcome(false, "control plane reachable", $"{target}: {e.StatusCode}: {e.Status.Detail}",
                e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded
                    ? "is ztm-controlplane running, and does the config's address reach it (ztmctl --config)?"
                    : "the operator credential was refused: use the config the control plane wrote (ztmctl --config)"));
            return e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded ? Ztmctl.Unreachable : Failed;
        }

        var now = DateTimeOffset.UtcNow;
        List<Outcome> outcomes =
        [
            new(true, "control plane reachable", $"{target}, config {status.Version}", null),
            LeaderKnown(status),
            CaValidity(status, now, minDays),
            await CaRotationAsync(ca, cancellation),
            SidecarsSynced(status),
            SidecarCertificates(status, now),
        ];
        foreach (var outcome in outcomes)
        {
            Print(outcome);
        }
        if (kubeconfig is not null)
        {
            foreach (var outcome in await ClusterAsync(kubeconfig, webhook, status, cancellation))
            {
                Print(outcome);
                outcomes.Add(outcome);
            }
        }
        return outcomes.All(o => o.Passed) ? 0 : Failed;
    }

    private static Outcome LeaderKnown(StatusResponse status)
    {
        const string Title = "leading replica known";
        if (status.Replica.Length == 0)
        {
            return new(false, Title, "the control plane does not say which replica leads", "upgrade ztm-controlplane to this ztmctl's version");
        }
        if (status.Leader.Length == 0)
        {
            return new(false, Title, $"no replica holds the Lease (asked {status.Replica})",
                "a replica takes the Lease within a lease duration of starting or of the last holder's end; if none does, check the replicas' logs and their RBAC on leases (coordination.k8s.io) in the control plane's namespace");
        }
        return new(true, Title, status.Leader == status.Replica ? $"{status.Leader} (the replica that answered)" : $"{status.Leader} (asked {status.Replica})", null);
    }

    /// <summary>A CA root rotation, as the CaAdmin status tells it: none, running (what its next step waits for), or held up by the sidecars it names.</summary>
    private static async Task<Outcome> CaRotationAsync(CaAdmin.CaAdminClient client, CancellationToken cancellation)
    {
        const string Title = "CA rotation";
        CaStatusResponse ca;
        try
        {
            ca = await client.StatusAsync(new CaStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: cancellation);
        }
        catch (RpcException e)
        {
            return new(false, Title, $"the CA status cannot be read: {e.StatusCode}: {e.Status.Detail}",
                e.StatusCode == StatusCode.Unimplemented ? "upgrade ztm-controlplane to this ztmctl's version" : "ztmctl ca status shows the same call's answer");
        }
        if (ca.Phase == "none")
        {
            return new(true, Title, "no rotation running", null);
        }
        var since = ca.PhaseSince is null ? "" : $" since {ca.PhaseSince.ToDateTimeOffset():yyyy-MM-dd'T'HH:mm:ss'Z'}";
        var next = ca.NextStepAt is null ? "" : $" (next step at {ca.NextStepAt.ToDateTimeOffset():yyyy-MM-dd'T'HH:mm:ss'Z'})";
        var detail = $"phase {ca.Phase}{since}, waiting for {(ca.WaitingFor.Length > 0 ? ca.WaitingFor : "its next step")}{next}";
        if (ca.BlockedBy.Count == 0)
        {
            return new(true, Title, detail, null);
        }
        return new(false, Title, $"phase {ca.Phase}{since}, blocked by {ca.BlockedBy.Count} sidecar(s)",
            "a sidecar that is gone holds the rotation until it comes back or its certificate expires: bring it back; a connected one follows the new bundle within seconds; ztmctl ca status shows what each step waits for")
        {
            Lines = [.. ca.BlockedBy],
        };
    }

    private static Outcome CaValidity(StatusResponse status, DateTimeOffset now, int minDays)
    {
        var roots = status.TrustBundle?.Roots.Select(r => X509CertificateLoader.LoadCertificate(r.Span)).ToList() ?? [];
        if (roots.Count == 0)
        {
            return new(false, "CA root valid", "the control plane sent no trust bundle", "upgrade ztm-controlplane to this ztmctl's version");
        }
        var lines = roots.Select(r => $"{r.Subject}, not after {r.NotAfter.ToUniversalTime():yyyy-MM-dd'T'HH:mm:ss'Z'} ({DaysLeft(r, now)})").ToList();
        var latest = roots.MaxBy(r => r.NotAfter)!;
        var expired = roots.Where(r => r.NotAfter.ToUniversalTime() <= now).ToList();
        var left = latest.NotAfter.ToUniversalTime() - now;
        var passed = expired.Count == 0 && left >= TimeSpan.FromDays(minDays);
        var detail = roots.Count == 1 ? lines[0] : $"{roots.Count} roots, the latest {latest.Subject} with {DaysLeft(latest, now)}";
        var hint = expired.Count > 0
            ? "an expired root verifies nothing: replace the CA (a new plug-in CA, or rotate it) and restart the sidecars"
            : $"fewer than {minDays} days left: rotate the CA root before it expires (a new plug-in CA, or a CA rotation)";
        foreach (var root in roots)
        {
            root.Dispose();
        }
        return new(passed, "CA root valid", detail, passed ? null : hint) { Lines = roots.Count == 1 ? [] : lines };
    }

    private static string DaysLeft(X509Certificate2 root, DateTimeOffset now)
    {
        var left = root.NotAfter.ToUniversalTime() - now;
        return left <= TimeSpan.Zero ? $"expired {Math.Floor(-left.TotalDays).ToString(CultureInfo.InvariantCulture)} days ago" : $"{Math.Floor(left.TotalDays).ToString(CultureInfo.InvariantCulture)} days left";
    }

    private static Outcome SidecarsSynced(StatusResponse status)
    {
        var connected = status.Sidecars.Where(s => s.Connected).ToList();
        var behind = connected.Where(s => s.VersionApplied != status.Version || s.NackError.Length > 0).ToList();
        if (behind.Count == 0)
        {
            return new(true, "sidecars synced", connected.Count == 0 ? "no sidecar connected" : $"{connected.Count} connected, all on config {status.Version}", null);
        }
        return new(false, "sidecars synced", $"{behind.Count} of {connected.Count} connected sidecar(s) not on config {status.Version}",
            "a NACKed config is fixed by correcting the policy the sidecar refuses (its log and ztmctl status say why); one behind without a NACK has not answered yet")
        {
            Lines = [.. behind.Select(s => $"{s.SpiffeId} ({s.Service}): applied {Version(s.VersionApplied)}" +
                (s.NackError.Length > 0 ? $", NACKed {Version(s.VersionSent)}: {s.NackError}" : $", {Version(s.VersionSent)} sent, not ACKed yet"))],
        };
    }

    private static string Version(string version) => version.Length > 0 ? version : "none";

    private static Outcome SidecarCertificates(StatusResponse status, DateTimeOffset now)
    {
        var connected = status.Sidecars.Where(s => s.Connected).ToList();
        var bad = connected.Where(s => s.CertificateRoot.Length == 0 || s.CertificateExpiresAt.ToDateTimeOffset() <= now).ToList();
        if (bad.Count == 0)
        {
            return new(true, "sidecar certificates from the current bundle", connected.Count == 0 ? "no sidecar connected" : $"{connected.Count} of {connected.Count}", null);
        }
        return new(false, "sidecar certificates from the current bundle", $"{bad.Count} of {connected.Count} connected sidecar(s) hold a certificate that is not",
            "a sidecar renews at half-life; one that cannot (revoked, control plane unreachable) needs a restart or a new join token")
        {
            Lines = [.. bad.Select(s => $"{s.SpiffeId} ({s.Service}): serial {s.Serial}, " +
                (s.CertificateRoot.Length == 0 ? "chains to no root of the current bundle" : $"expired at {s.CertificateExpiresAt.ToDateTimeOffset():yyyy-MM-dd'T'HH:mm:ss'Z'}"))],
        };
    }

    private static async Task<List<Outcome>> ClusterAsync(string kubeconfig, string webhook, StatusResponse status, CancellationToken cancellation)
    {
        IKubernetes client;
        try
        {
            client = new Kubernetes(kubeconfig.Length > 0 ? KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig)
                : Environment.GetEnvironmentVariable("KUBECONFIG") is { Length: > 0 } ? KubernetesClientConfiguration.BuildDefaultConfig()
                : KubernetesClientConfiguration.InClusterConfig());
        }
#pragma warning disable CA1031 // every way a kubeconfig can be wrong is one ✘ line
        catch (Exception e)
#pragma warning restore CA1031
        {
            return [new(false, "Kubernetes API reachable", e.Message, "pass --kubeconfig, set $KUBECONFIG, or run ztmctl in a pod with a service account")];
        }
        using (client)
        {
            return [await CrdsAsync(client, cancellation), await WebhookAsync(client, webhook, status, cancellation)];
        }
    }

    private static async Task<Outcome> CrdsAsync(IKubernetes client, CancellationToken cancellation)
    {
        const string Title = "CRDs installed and served";
        const string Hint = "install the chart (helm upgrade --install): it installs the CRDs; kubectl get crd shows them";
        IList<k8s.Models.V1CustomResourceDefinition> crds;
        try
        {
            crds = (await client.ApiextensionsV1.ListCustomResourceDefinitionAsync(cancellationToken: cancellation)).Items;
        }
        catch (Exception e) when (e is HttpOperationException or HttpRequestException)
        {
            return new(false, Title, $"the CRDs cannot be listed: {Describe(e)}", "ztmctl needs to list customresourcedefinitions (apiextensions.k8s.io)");
        }
        var problems = new List<string>();
        var served = new List<string>();
        foreach (var kind in PolicyKinds.Builtin.All)
        {
            var crd = crds.FirstOrDefault(c => c.Spec?.Group == PolicyGroup && c.Spec.Names?.Kind == kind.Name);
            if (crd is null)
            {
                problems.Add($"{kind.Name}: no CustomResourceDefinition in {PolicyGroup}");
                continue;
            }
            var name = crd.Metadata?.Name ?? kind.Name;
            if (crd.Status?.Conditions?.FirstOrDefault(c => c.Type == "Established")?.Status != "True")
            {
                problems.Add($"{name}: not Established");
                continue;
            }
            if (crd.Spec.Versions?.FirstOrDefault(v => v.Name == PolicyVersion) is not { Served: true })
            {
                problems.Add($"{name}: {PolicyVersion} is not served");
                continue;
            }
            try
            {
                await client.CustomObjects.ListClusterCustomObjectAsync(PolicyGroup, PolicyVersion, crd.Spec.Names!.Plural, limit: 1, cancellationToken: cancellation);
                served.Add(crd.Spec.Names.Plural);
            }
            catch (Exception e) when (e is HttpOperationException or HttpRequestException)
            {
                problems.Add($"{name}: listing {PolicyGroup}/{PolicyVersion} {crd.Spec.Names.Plural} failed: {Describe(e)}");
            }
        }
        return problems.Count == 0
            ? new(true, Title, $"{string.Join(", ", served)} ({PolicyGroup}/{PolicyVersion})", null)
            : new(false, Title, $"{problems.Count} of {PolicyKinds.Builtin.All.Count} kind(s) not installed or not served", Hint) { Lines = problems };
    }

    private static async Task<Outcome> WebhookAsync(IKubernetes client, string name, StatusResponse status, CancellationToken cancellation)
    {
        const string Title = "webhook caBundle current";
        k8s.Models.V1MutatingWebhookConfiguration configuration;
        try
        {
            configuration = await client.AdmissionregistrationV1.ReadMutatingWebhookConfigurationAsync(name, cancellationToken: cancellation);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return new(false, Title, $"MutatingWebhookConfiguration {name} does not exist", "install the chart, or name the configuration with --webhook-configuration");
        }
        catch (Exception e) when (e is HttpOperationException or HttpRequestException)
        {
            return new(false, Title, $"MutatingWebhookConfiguration {name} cannot be read: {Describe(e)}", "ztmctl needs to get mutatingwebhookconfigurations (admissionregistration.k8s.io)");
        }
        var current = status.TrustBundle?.Roots.Select(r => Convert.ToHexStringLower(SHA256.HashData(r.Span))).ToHashSet() ?? [];
        var stale = new List<string>();
        var webhooks = configuration.Webhooks ?? [];
        foreach (var hook in webhooks)
        {
            var bundle = hook.ClientConfig?.CaBundle is { Length: > 0 } bytes ? Encoding.ASCII.GetString(bytes) : "";
            var held = new X509Certificate2Collection();
            try
            {
                held.ImportFromPem(bundle);
            }
            catch (CryptographicException)
            {
                // not PEM: holds no root
            }
            var fingerprints = held.Select(c => Convert.ToHexStringLower(SHA256.HashData(c.RawDataMemory.Span))).ToHashSet();
            foreach (var certificate in held)
            {
                certificate.Dispose();
            }
            if (!fingerprints.SetEquals(current))
            {
                stale.Add($"{hook.Name}: caBundle holds {fingerprints.Count} certificate(s), {fingerprints.Intersect(current).Count()} of the {current.Count} current root(s)");
            }
        }
        if (webhooks.Count == 0)
        {
            stale.Add($"{name} has no webhooks");
        }
        return stale.Count == 0
            ? new(true, Title, $"{name} ({webhooks.Count} webhook(s))", null)
            : new(false, Title, $"{name}: {stale.Count} webhook(s) without the current roots",
                "the leading control-plane replica keeps it current when run with --webhook-configuration (the chart does); check its log and RBAC") { Lines = stale };
    }

    private static string Describe(Exception e) =>
        e is HttpOperationException h ? $"{(int)h.Response.StatusCode} {h.Response.StatusCode}" : e.Message;

    private static void Print(Outcome outcome)
    {
        Console.Out.WriteLine($"{(outcome.Passed ? "✔" : "✘")} {outcome.Title}: {outcome.Detail}{(outcome.Hint is null ? "" : $" (hint: {outcome.Hint})")}");
        foreach (var line in outcome.Lines)
        {
            Console.Out.WriteLine($"    {line}");
        }
    }

    /// <summary>One check's result: its line, and the offenders shown under it.</summary>
    private sealed record Outcome(bool Passed, string Title, string Detail, string? Hint)
    {
        public IReadOnlyList<string> Lines { get; init; } = [];
    }
}
