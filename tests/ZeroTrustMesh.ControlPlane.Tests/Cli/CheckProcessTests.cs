using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using k8s.Models;
using Xunit.Abstractions;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.KubernetesDouble;
using ZeroTrustMesh.Policy.Kinds;

namespace ZeroTrustMesh.ControlPlane.Tests.Cli;

/// <summary>
/// <c>ztmctl check</c> as an operator runs it, against <c>ztm-controlplane --kubernetes</c> and a <c>ztm-sidecar</c> as
/// processes, with the Kubernetes API double as the cluster: every check passes on a healthy installation, and a
/// running CA rotation says what it waits for; a nearly expired CA, a sidecar that NACKed, missing CRDs, a missing
/// webhook configuration and a Lease nobody holds each fail with a hint and exit 1, as does a CA rotation held up by a
/// sidecar that is gone; a control plane that is gone exits 3.
/// </summary>
public sealed class CheckProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private const string Webhook = "ztm-sidecar-injector";

    private readonly string _dir = Directory.CreateTempSubdirectory("ztm-check-process-").FullName;
    private KubernetesApiDouble _api = null!;
    private Dictionary<string, string> _environment = null!;

    public async Task InitializeAsync()
    {
        _api = await KubernetesApiDouble.StartAsync();
        Policy.PolicyCustomResources.Register(_api); // served; whether their CRDs are installed is each test's
        var kubeconfig = Path.Combine(_dir, "kubeconfig");
        _api.WriteKubeconfig(kubeconfig);
        _environment = new Dictionary<string, string> { ["KUBECONFIG"] = kubeconfig, ["HOME"] = _dir };
        _api.Seed(new V1Pod
        {
            ApiVersion = "v1",
            Kind = "Pod",
            Metadata = new V1ObjectMeta { Name = "orders-1", NamespaceProperty = "shop" },
            Spec = new V1PodSpec { ServiceAccountName = "orders", Containers = [new V1Container { Name = "app", Image = "orders:1" }] },
            Status = new V1PodStatus { Phase = "Running" },
        });
    }

    public async Task DisposeAsync()
    {
        await _api.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Every_check_passes_on_a_healthy_installation_and_a_running_ca_rotation_says_what_it_waits_for()
    {
        foreach (var kind in PolicyKinds.Builtin.All)
        {
            _api.Seed(Crd(kind));
        }
        _api.Seed(new V1MutatingWebhookConfiguration
        {
            ApiVersion = "admissionregistration.k8s.io/v1",
            Kind = "MutatingWebhookConfiguration",
            Metadata = new V1ObjectMeta { Name = Webhook },
            Webhooks =
            [
                Hook("namespace.sidecar-injector.ztm.dev"),
                Hook("object.sidecar-injector.ztm.dev"),
            ],
        });

        // A long reconnect grace: a rotation started below waits for it, whatever the machine's pace.
        await using var controlPlane = await StartControlPlaneAsync(["--webhook-configuration", Webhook, "--ca-rotation-reconnect-grace", "10m"]);
        var leading = await controlPlane.WaitForLineAsync(l => l.Contains("] leading: ", StringComparison.Ordinal), "its Lease");
        var replica = leading[(leading.IndexOf("] leading: ", StringComparison.Ordinal) + "] leading: ".Length)..].Split(' ')[0];
        await _api.WaitForAsync(api => api.Get<V1MutatingWebhookConfiguration>("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", null, Webhook)!
            .Webhooks.All(w => w.ClientConfig.CaBundle is { Length: > 0 }), ExecutableProcess.Timeout);
        await using var sidecar = StartSidecar();
        await sidecar.WaitForLineAsync(l => l.Contains(" applied: 0 resource(s) for this workload", StringComparison.Ordinal), "its first config");

        // The control plane records the ACK just after the sidecar logs it: the check is run again until it sees it.
        var (code, lines) = await CheckAsync(until: c => c == 0);

        Assert.Equal(0, code);
        Assert.Equal(8, lines.Count);
        Assert.All(lines, l => Assert.StartsWith("✔ ", l, StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("✔ control plane reachable: https://127.0.0.1:", StringComparison.Ordinal));
        Assert.Contains($"✔ leading replica known: {replica} (the replica that answered)", lines);
        var caLine = lines.ToList().FindIndex(l => l.StartsWith("✔ CA root valid: ", StringComparison.Ordinal) && l.Contains(" days left)", StringComparison.Ordinal));
        Assert.True(caLine >= 0, "no CA root valid line");
        Assert.Equal("✔ CA rotation: no rotation running", lines[caLine + 1]);
        Assert.Contains(lines, l => l.StartsWith("✔ sidecars synced: 1 connected, all on config ", StringComparison.Ordinal));
        Assert.Contains("✔ sidecar certificates from the current bundle: 1 of 1", lines);
        Assert.Contains(lines, l => l.StartsWith("✔ CRDs installed and served: ", StringComparison.Ordinal)
            && l.Contains("authorizationpolicies", StringComparison.Ordinal) && l.EndsWith(" (security.ztm.dev/v1)", StringComparison.Ordinal));
        Assert.Contains($"✔ webhook caBundle current: {Webhook} (2 webhook(s))", lines);

        // ztmctl status names the root each sidecar's certificate chains to.
        await using var status = ExecutableProcess.Start("ztmctl-status", ExecutableProcess.Ztmctl, ["status", "-o", "json", "--config", Path.Combine(_dir, "config")], _environment, output);
        Assert.Equal(0, await status.Exited.WaitAsync(ExecutableProcess.Timeout));
        using var root = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(Path.Combine(_dir, "data", "bundle.pem")));
        var sidecars = JsonNode.Parse(string.Join('\n', status.Lines))!["sidecars"]!.AsArray();
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(root.RawData)), Assert.Single(sidecars)!["certificateRoot"]!.GetValue<string>());

        // A rotation started: the check says its phase and what its next step waits for (here, the reconnect grace).
        await using (var rotate = ExecutableProcess.Start("ztmctl-ca-rotate", ExecutableProcess.Ztmctl, ["ca", "rotate", "--config", Path.Combine(_dir, "config")], _environment, output))
        {
            Assert.Equal(0, await rotate.Exited.WaitAsync(ExecutableProcess.Timeout));
        }
        var (_, rotating) = await CheckAsync(until: _ => true);
        var rotation = Assert.Single(rotating, l => l.StartsWith("✔ CA rotation: phase prepared since ", StringComparison.Ordinal));
        Assert.Contains(", waiting for sidecars to reconnect to this control plane (started recently) before counting who follows bundle 2 (next step at ", rotation, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_ca_rotation_held_up_by_a_sidecar_that_is_gone_fails_naming_it()
    {
        await using var controlPlane = await StartControlPlaneAsync(["--ca-rotation-reconnect-grace", "1s"]);
        await using (var sidecar = StartSidecar())
        {
            await sidecar.WaitForLineAsync(l => l.Contains(" applied: 0 resource(s) for this workload", StringComparison.Ordinal), "its first config");
        }
        // The sidecar is gone, holding a live certificate and a bundle without the new root.
        await using (var rotate = ExecutableProcess.Start("ztmctl-ca-rotate", ExecutableProcess.Ztmctl, ["ca", "rotate", "--config", Path.Combine(_dir, "config")], _environment, output))
        {
            Assert.Equal(0, await rotate.Exited.WaitAsync(ExecutableProcess.Timeout));
        }

        // Until the reconnect grace has passed the rotation waits for it; then the sidecar is named.
        var (code, lines) = await CheckAsync(until: (_, l) => l.Any(x => x.StartsWith("✘ CA rotation: ", StringComparison.Ordinal)));

        Assert.Equal(1, code);
        var blocked = Assert.Single(lines, l => l.StartsWith("✘ CA rotation: phase prepared since ", StringComparison.Ordinal));
        Assert.Contains(", blocked by 1 sidecar(s) (hint: a sidecar that is gone holds the rotation until it comes back or its certificate expires: bring it back;", blocked, StringComparison.Ordinal);
        Assert.Contains("ztmctl ca status", blocked, StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith($"    {Orders} (not connected since ", StringComparison.Ordinal) && l.Contains(", holds a certificate until ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_nearly_expired_ca_a_nacking_sidecar_missing_crds_and_webhook_and_no_leader_each_fail_with_a_hint()
    {
        // The inline JWKS passes the control plane's shape check; the sidecar cannot make keys of it, and NACKs.
        _api.Seed(JsonNode.Parse("""
            {"apiVersion":"security.ztm.dev/v1","kind":"RequestAuthentication","metadata":{"name":"orders-jwt","namespace":"shop"},
             "spec":{"selector":{"service":"orders"},"jwtRules":[{"issuer":"https://issuer.test",
               "jwks":"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k1\",\"x\":\"not-a-point\",\"y\":\"not-a-point\"}]}"}]}}
            """)!.AsObject());
        SeedPlugInCa(TimeSpan.FromDays(10));
        // The Lease cannot be read or taken (RBAC without leases): no replica leads.
        _api.Fail(r => r.Path.Value!.Contains("/leases", StringComparison.Ordinal), int.MaxValue, 403, "Forbidden");

        await using (var controlPlane = await StartControlPlaneAsync(["--namespace", "ztm-system"]))
        await using (var sidecar = StartSidecar())
        {
            await sidecar.WaitForLineAsync(l => l.Contains(" refused (NACK)", StringComparison.Ordinal), "its NACK");

            var (code, lines) = await CheckAsync(until: _ => true);

            Assert.Equal(1, code);
            Assert.Contains(lines, l => l.StartsWith("✔ control plane reachable: ", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.StartsWith("✘ leading replica known: no replica holds the Lease (asked ", StringComparison.Ordinal)
                && l.Contains("(hint: a replica takes the Lease within a lease duration", StringComparison.Ordinal));
            Assert.Contains("✔ CA rotation: no rotation running", lines); // the operator's own CA: never rotated here
            var ca = Assert.Single(lines, l => l.StartsWith("✘ CA root valid: CN=Check Test CA, not after ", StringComparison.Ordinal));
            Assert.Contains("(9 days left) (hint: fewer than 30 days left: rotate the CA root", ca, StringComparison.Ordinal);
            Assert.Contains(lines, l => l.StartsWith("✘ sidecars synced: 1 of 1 connected sidecar(s) not on config ", StringComparison.Ordinal) && l.Contains("(hint: ", StringComparison.Ordinal));
            var nacked = Assert.Single(lines, l => l.StartsWith($"    {Orders} (orders.shop): applied none, NACKed ", StringComparison.Ordinal));
            Assert.Contains("jwks", nacked, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("✔ sidecar certificates from the current bundle: 1 of 1", lines);
            Assert.Contains(lines, l => l.StartsWith($"✘ CRDs installed and served: {PolicyKinds.Builtin.All.Count} of {PolicyKinds.Builtin.All.Count} kind(s) not installed or not served (hint: ", StringComparison.Ordinal));
            Assert.Contains("    AuthorizationPolicy: no CustomResourceDefinition in security.ztm.dev", lines);
            Assert.Contains(lines, l => l.StartsWith($"✘ webhook caBundle current: MutatingWebhookConfiguration {Webhook} does not exist (hint: ", StringComparison.Ordinal));

            // A looser threshold passes the CA line (and only it changes).
            var (_, relaxed) = await CheckAsync(until: _ => true, "--ca-min-days", "5");
            Assert.Contains(relaxed, l => l.StartsWith("✔ CA root valid: CN=Check Test CA", StringComparison.Ordinal));
        }

        // The control plane is gone (stopped above).
        var (gone, goneLines) = await CheckAsync(until: _ => true);
        Assert.Equal(3, gone);
        Assert.Contains(goneLines, l => l.StartsWith("✘ control plane reachable: https://127.0.0.1:", StringComparison.Ordinal) && l.Contains("(hint: is ztm-controlplane running", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_bad_threshold_is_a_usage_error()
    {
        await using var check = ExecutableProcess.Start("ztmctl-check", ExecutableProcess.Ztmctl, ["check", "--ca-min-days", "-1", "--config", Path.Combine(_dir, "config")], _environment, output);
        Assert.Equal(2, await check.Exited.WaitAsync(ExecutableProcess.Timeout));
        Assert.Equal(["ztmctl: --ca-min-days -1 must be 0 or more"], check.Lines);
    }

    private string _address = "";

    private async Task<ExecutableProcess> StartControlPlaneAsync(string[] args)
    {
        var controlPlane = ExecutableProcess.Start("controlplane", ExecutableProcess.ControlPlane,
            ["--kubernetes", "--listen", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--data-dir", Path.Combine(_dir, "data"),
             "--operator-config", Path.Combine(_dir, "config"), .. args],
            _environment, output);
        var listening = await controlPlane.WaitForLineAsync(l => l.StartsWith("ztm-controlplane: listening on ", StringComparison.Ordinal), "its address");
        _address = listening["ztm-controlplane: listening on ".Length..];
        return controlPlane;
    }

    private ExecutableProcess StartSidecar()
    {
        var token = Path.Combine(_dir, "token");
        File.WriteAllText(token, _api.IssuePodToken("shop", "orders-1", ControlPlaneOptions.DefaultTokenAudience));
        return ExecutableProcess.Start("sidecar", ExecutableProcess.Sidecar,
            ["--control-plane", _address, "--trust-bundle", Path.Combine(_dir, "data", "bundle.pem"), "--service-account-token-file", token,
             "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0"],
            _environment, output);
    }

    /// <summary>Runs <c>ztmctl check --kubernetes</c> (again, within the timeout, until <paramref name="until"/> accepts its exit code).</summary>
    private Task<(int Code, IReadOnlyList<string> Lines)> CheckAsync(Func<int, bool> until, params string[] args) => CheckAsync((code, _) => until(code), args);

    /// <summary>Runs <c>ztmctl check --kubernetes</c> (again, within the timeout, until <paramref name="until"/> accepts its exit code and lines).</summary>
    private async Task<(int Code, IReadOnlyList<string> Lines)> CheckAsync(Func<int, IReadOnlyList<string>, bool> until, params string[] args)
    {
        using var timeout = new CancellationTokenSource(ExecutableProcess.Timeout);
        for (var attempt = 1; ; attempt++)
        {
            await using var check = ExecutableProcess.Start($"ztmctl-check-{attempt}", ExecutableProcess.Ztmctl,
                ["check", "--kubernetes", "--config", Path.Combine(_dir, "config"), .. args], _environment, output);
            var code = await check.Exited.WaitAsync(timeout.Token);
            if (until(code, check.Lines) || timeout.IsCancellationRequested)
            {
                return (code, check.Lines);
            }
        }
    }

    private static V1CustomResourceDefinition Crd(PolicyKind policyKind)
    {
        var (kind, plural) = (policyKind.Name, KubernetesPolicySource.PluralOf(policyKind));
        return new V1CustomResourceDefinition
        {
            ApiVersion = "apiextensions.k8s.io/v1",
            Kind = "CustomResourceDefinition",
            Metadata = new V1ObjectMeta { Name = $"{plural}.security.ztm.dev" },
            Spec = new V1CustomResourceDefinitionSpec
            {
                Group = "security.ztm.dev",
                Scope = "Namespaced",
                Names = new V1CustomResourceDefinitionNames { Kind = kind, Plural = plural, Singular = kind.ToLowerInvariant(), ListKind = kind + "List" },
                Versions = [new V1CustomResourceDefinitionVersion { Name = "v1", Served = true, Storage = true }],
            },
            Status = new V1CustomResourceDefinitionStatus
            {
                Conditions = [new V1CustomResourceDefinitionCondition { Type = "Established", Status = "True" }],
                AcceptedNames = new V1CustomResourceDefinitionNames { Kind = kind, Plural = plural },
                StoredVersions = ["v1"],
            },
        };
    }

    private static V1MutatingWebhook Hook(string name) => new()
    {
        Name = name,
        AdmissionReviewVersions = ["v1"],
        SideEffects = "None",
        ClientConfig = new Admissionregistrationv1WebhookClientConfig
        {
            Service = new Admissionregistrationv1ServiceReference { Name = "ztm-controlplane", NamespaceProperty = "ztm-system", Path = "/inject", Port = 15017 },
        },
    };

    /// <summary>
    /// An operator's CA (root, with its key) valid for <paramref name="lifetime"/> from now, in the Secret the control
    /// plane reads in Kubernetes (<c>ztm-system/ztm-ca</c>), in the cert-manager shape: a plug-in CA.
    /// </summary>
    private void SeedPlugInCa(TimeSpan lifetime)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Check Test CA", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.CreateSelfSigned(now.AddMinutes(-5), now + lifetime);
        _api.Seed(new V1Secret
        {
            ApiVersion = "v1",
            Kind = "Secret",
            Metadata = new V1ObjectMeta { Name = "ztm-ca", NamespaceProperty = "ztm-system" },
            Type = "kubernetes.io/tls",
            Data = new Dictionary<string, byte[]>
            {
                ["tls.crt"] = Encoding.ASCII.GetBytes(certificate.ExportCertificatePem() + "\n"),
                ["tls.key"] = Encoding.ASCII.GetBytes(key.ExportPkcs8PrivateKeyPem() + "\n"),
                ["ca.crt"] = Encoding.ASCII.GetBytes(certificate.ExportCertificatePem() + "\n"),
            },
        });
    }
}
