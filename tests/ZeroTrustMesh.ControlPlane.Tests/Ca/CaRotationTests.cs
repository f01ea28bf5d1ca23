using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using TrustBundle = ZeroTrustMesh.Identity.TrustBundle;

namespace ZeroTrustMesh.ControlPlane.Tests.Ca;

/// <summary>The rotation's phases and the gates between them, on a fake clock with sessions opened as the config stream opens them.</summary>
public sealed class CaRotationTests : IAsyncLifetime
{
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");
    private static readonly SpiffeId Frontend = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/frontend");
    private static readonly TimeSpan Skew = TimeSpan.FromMinutes(1);

    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-rotation-").FullName;
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private ControlPlaneParts _parts = null!;

    public async Task InitializeAsync() => _parts = await StartAsync();

    public async Task DisposeAsync()
    {
        await _parts.DisposeAsync();
        Directory.Delete(_dataDir, recursive: true);
    }

    private ControlPlaneOptions Options(TimeSpan? rootLifetime = null, TimeSpan? rotateBefore = null, TimeSpan? reconnectGrace = null, PlugInCa? plugIn = null)
    {
        var defaults = ControlPlaneParts.Options(_dataDir);
        return new ControlPlaneOptions
        {
            DataDir = defaults.DataDir,
            ListenAddress = defaults.ListenAddress,
            Port = defaults.Port,
            TrustDomain = defaults.TrustDomain,
            SvidTtl = defaults.SvidTtl,
            JoinTokenTtl = defaults.JoinTokenTtl,
            OperatorConfigPath = defaults.OperatorConfigPath,
            CaRotationSkew = Skew,
            CaRootLifetime = rootLifetime ?? FileCaStore.RootLifetime,
            CaRotateBefore = rotateBefore ?? TimeSpan.FromDays(365),
            CaRotationReconnectGrace = reconnectGrace ?? TimeSpan.Zero,
            PlugInCa = plugIn,
        };
    }

    private Task<ControlPlaneParts> StartAsync(ControlPlaneOptions? options = null) =>
        ControlPlaneParts.StartAsync(_dataDir, _time, options: options ?? Options());

    private CaRotation Rotation => _parts.Get<CaRotation>();

    private CertificateAuthority Ca => _parts.Get<CertificateAuthority>();

    [Fact]
    public void Prepare_adds_a_new_root_to_the_bundle_pushed_to_sidecars_and_the_bundle_file_while_the_old_root_still_signs()
    {
        var oldRoot = Ca.SigningCertificate;
        var session = Open(Orders, Issue(Orders));
        var versionBefore = _parts.Get<ConfigStore>().Current.Version;

        var prepared = Rotation.Start("operator");

        Assert.Equal(RotationPhase.Prepared, prepared.Phase);
        Assert.Equal(2ul, prepared.BundleSequence);
        var config = _parts.Get<ConfigStore>().Current;
        Assert.NotEqual(versionBefore, config.Version);
        Assert.Equal([oldRoot.Thumbprint, prepared.Next!.Thumbprint], config.Bundle.Roots.Select(r => r.Thumbprint));
        Assert.Equal(2ul, config.Bundle.Sequence);
        Assert.Equal(2ul, _parts.Get<ConfigDistributor>().SnapshotFor(config, session.Workload).BundleSequence);
        Assert.Equal(2, TrustBundle.FromPem(SpiffeId.DefaultTrustDomain, File.ReadAllText(FileCaStore.BundlePath(_dataDir))).Roots.Count);
        Assert.Equal(2, _parts.Get<TrustBundleFeed>().Current.Roots.Count);
        using var leaf = Issue(Orders);
        Assert.Equal(KeyIds.Subject(oldRoot), KeyIds.Authority(leaf)); // not active yet
    }

    [Fact]
    public void Activation_waits_for_every_connected_sidecar_to_follow_the_new_bundle_then_new_leaves_chain_to_the_new_root()
    {
        var orders = Open(Orders, Issue(Orders));
        var frontend = Open(Frontend, Issue(Frontend));
        orders.Follows(1);
        frontend.Follows(1);
        var prepared = Rotation.Start("operator");

        var gate = Rotation.Advance();
        Assert.Equal(RotationPhase.Prepared, Rotation.State.Phase);
        Assert.Equal(2, gate.Blockers.Count);
        Assert.Contains(gate.Blockers, b => b.StartsWith($"{Orders} (connected, follows bundle 1)", StringComparison.Ordinal));

        orders.Follows(2);
        gate = Rotation.Advance();
        Assert.Equal(RotationPhase.Prepared, Rotation.State.Phase);
        Assert.Equal($"{Frontend} (connected, follows bundle 1)", Assert.Single(gate.Blockers));

        frontend.Follows(2);
        gate = Rotation.Advance();
        Assert.Equal(RotationPhase.Active, Rotation.State.Phase);
        Assert.Empty(gate.Blockers);
        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromHours(1), Rotation.State.PreviousLeavesExpireBy);
        Assert.Equal(prepared.Next!.Thumbprint, Ca.SigningCertificate.Thumbprint);
        Assert.Equal(2ul, Ca.Bundle.Sequence); // the same two roots: nothing new for sidecars
        using var leaf = Issue(Orders);
        Assert.Equal(KeyIds.Subject(prepared.Next), KeyIds.Authority(leaf));
        Assert.True(SvidVerifier.Verify(leaf, [], Ca.Bundle, _time.GetUtcNow()).IsValid);
    }

    [Fact]
    public void Retire_waits_for_the_old_roots_last_leaf_plus_skew_then_the_old_root_leaves_the_bundle_and_is_deleted_once_sidecars_follow()
    {
        var orders = Open(Orders, Issue(Orders));
        var prepared = Rotation.Start("operator");
        orders.Follows(2);
        Rotation.Advance();
        Assert.Equal(RotationPhase.Active, Rotation.State.Phase);
        var oldRoot = prepared.Current;

        _time.Advance(TimeSpan.FromHours(1));
        var gate = Rotation.Advance();
        Assert.Equal(RotationPhase.Active, Rotation.State.Phase); // the skew is not over
        Assert.Equal(_time.GetUtcNow() + Skew, gate.OpensAt);
        Assert.Contains("leaves the previous root signed to expire", gate.WaitingFor, StringComparison.Ordinal);

        _time.Advance(Skew);
        gate = Rotation.Advance();
        Assert.Equal(RotationPhase.Retiring, Rotation.State.Phase);
        Assert.Equal(3ul, Ca.Bundle.Sequence);
        Assert.Equal(prepared.Next!.Thumbprint, Assert.Single(Ca.Bundle.Roots).Thumbprint);
        Assert.Equal(prepared.Next.Thumbprint, Assert.Single(_parts.Get<ConfigStore>().Current.Bundle.Roots).Thumbprint);
        var bundleFile = TrustBundle.FromPem(SpiffeId.DefaultTrustDomain, File.ReadAllText(FileCaStore.BundlePath(_dataDir)));
        Assert.Equal(prepared.Next.Thumbprint, Assert.Single(bundleFile.Roots).Thumbprint);
        Assert.Single(gate.Blockers); // orders (a live certificate) follows bundle 2 still

        orders.Follows(3);
        Rotation.Advance();
        Assert.Equal(RotationPhase.None, Rotation.State.Phase);
        Assert.Null(Rotation.State.Previous);
        var saved = File.ReadAllText(Path.Combine(_dataDir, "ca", "rotation.json"));
        Assert.DoesNotContain(oldRoot.ExportCertificatePem().Split('\n')[1], saved, StringComparison.Ordinal);
        Assert.Equal(prepared.Next.ExportCertificatePem() + "\n", File.ReadAllText(Path.Combine(_dataDir, "ca", "ca.crt")));
    }

    [Fact]
    public void A_disconnected_sidecar_with_a_live_certificate_blocks_activation_and_is_named_until_that_certificate_expires()
    {
        using var held = Issue(Orders);
        var orders = Open(Orders, held);
        _parts.Get<ConfigDistributor>().Close(orders); // the sidecar went down
        Rotation.Start("operator");

        var gate = Rotation.Advance();
        Assert.Equal(RotationPhase.Prepared, Rotation.State.Phase);
        var blocker = Assert.Single(gate.Blockers);
        Assert.StartsWith($"{Orders} (not connected since ", blocker, StringComparison.Ordinal);
        Assert.Contains("has not said which bundle it follows, holds a certificate until", blocker, StringComparison.Ordinal);
        var status = CaAdminService.StatusOf(Rotation);
        Assert.Equal("prepared", status.Phase);
        Assert.Equal(blocker, Assert.Single(status.BlockedBy));
        var listed = Assert.Single(status.Sidecars);
        Assert.False(listed.Connected);
        Assert.Equal("current", listed.CertificateRoot);

        _time.Advance(held.NotAfter.ToUniversalTime() - _time.GetUtcNow() + TimeSpan.FromSeconds(1));
        Rotation.Advance();
        Assert.Equal(RotationPhase.Active, Rotation.State.Phase);
    }

    [Fact]
    public void A_second_rotation_while_one_runs_is_refused_saying_which_phase()
    {
        Rotation.Start("operator");

        var refused = Assert.Throws<RotationRefusedException>(() => Rotation.Start("operator"));

        Assert.StartsWith("a rotation is already running (phase prepared since ", refused.Message, StringComparison.Ordinal);
        Assert.Equal(2ul, Rotation.State.BundleSequence);
    }

    [Fact]
    public async Task The_admin_call_refuses_a_second_rotation_with_failed_precondition()
    {
        var service = new CaAdminService(Rotation, Microsoft.Extensions.Logging.Abstractions.NullLogger<CaAdminService>.Instance);
        var started = await service.Rotate(new CaRotateRequest(), new TestCallContext("/ztm.v1.CaAdmin/Rotate"));
        Assert.Equal("prepared", started.Phase);
        Assert.Equal(["current", "next"], started.Roots.Select(r => r.Role));
        Assert.All(started.Roots, r => Assert.True(r.InBundle));

        var refused = await Assert.ThrowsAsync<RpcException>(() => service.Rotate(new CaRotateRequest(), new TestCallContext("/ztm.v1.CaAdmin/Rotate")));

        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains("already running", refused.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_restart_resumes_the_phase_with_the_same_roots_signer_and_bundle_sequence()
    {
        var prepared = Rotation.Start("operator");
        var version = _parts.Get<ConfigStore>().Current.Version;
        await _parts.DisposeAsync();

        _parts = await StartAsync(Options(reconnectGrace: TimeSpan.FromMinutes(1)));

        Assert.Equal(RotationPhase.Prepared, Rotation.State.Phase);
        Assert.Equal(prepared.Next!.Thumbprint, Rotation.State.Next!.Thumbprint);
        Assert.Equal(prepared.Current.Thumbprint, Ca.SigningCertificate.Thumbprint);
        Assert.Equal(2ul, Ca.Bundle.Sequence);
        Assert.Equal(2, Ca.Bundle.Roots.Count);
        Assert.Equal(version, _parts.Get<ConfigStore>().Current.Version); // same content, same version
        // No sidecar has reconnected yet: that is not "every sidecar follows".
        var gate = Rotation.Advance();
        Assert.Equal(RotationPhase.Prepared, Rotation.State.Phase);
        Assert.StartsWith("sidecars to reconnect", gate.WaitingFor, StringComparison.Ordinal);

        _time.Advance(TimeSpan.FromMinutes(1));
        Rotation.Advance(); // none reconnected: nothing to wait for
        Assert.Equal(RotationPhase.Active, Rotation.State.Phase);
        await _parts.DisposeAsync();

        _parts = await StartAsync();

        Assert.Equal(RotationPhase.Active, Rotation.State.Phase);
        Assert.Equal(prepared.Next.Thumbprint, Ca.SigningCertificate.Thumbprint);
        Assert.True(Ca.SigningCertificate.HasPrivateKey);
        Assert.Equal(prepared.Current.Thumbprint, Rotation.State.Previous!.Thumbprint);
        Assert.False(Rotation.State.Previous.HasPrivateKey); // the previous root signs nothing any more
    }

    [Fact]
    public async Task A_rotation_starts_by_itself_when_the_root_nears_expiry_and_finishes_before_it_expires()
    {
        await _parts.DisposeAsync();
        Directory.Delete(_dataDir, recursive: true);
        Directory.CreateDirectory(_dataDir);
        _parts = await StartAsync(Options(rootLifetime: TimeSpan.FromDays(10), rotateBefore: TimeSpan.FromDays(2)));
        var firstRoot = Ca.SigningCertificate;

        _time.Advance(TimeSpan.FromDays(8) - TimeSpan.FromMinutes(1));
        Rotation.Advance();
        Assert.Equal(RotationPhase.None, Rotation.State.Phase);

        _time.Advance(TimeSpan.FromMinutes(2));
        Rotation.Advance(); // prepared, and with no sidecar to wait for, active at once
        Assert.Equal(RotationPhase.Active, Rotation.State.Phase);
        Assert.StartsWith("controlplane (root expires ", Rotation.State.StartedBy, StringComparison.Ordinal);
        Assert.NotEqual(firstRoot.Thumbprint, Ca.SigningCertificate.Thumbprint);
        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromDays(10), Ca.SigningCertificate.NotAfter.ToUniversalTime(), TimeSpan.FromSeconds(30));

        _time.Advance(TimeSpan.FromHours(1) + Skew);
        Rotation.Advance();
        Assert.Equal(RotationPhase.None, Rotation.State.Phase);
        Assert.True(_time.GetUtcNow() < firstRoot.NotAfter.ToUniversalTime());
    }

    [Fact]
    public async Task A_leaf_signed_by_the_old_root_near_its_end_never_outlives_it()
    {
        await _parts.DisposeAsync();
        Directory.Delete(_dataDir, recursive: true);
        Directory.CreateDirectory(_dataDir);
        _parts = await StartAsync(Options(rootLifetime: TimeSpan.FromDays(1), rotateBefore: TimeSpan.FromMinutes(90)));
        _time.Advance(TimeSpan.FromDays(1) - TimeSpan.FromMinutes(30));

        using var leaf = Issue(Orders);

        Assert.True(leaf.NotAfter.ToUniversalTime() <= Ca.SigningCertificate.NotAfter.ToUniversalTime());
    }

    [Fact]
    public void The_operator_credential_and_the_serving_certificate_are_issued_again_by_the_new_root_at_activation()
    {
        var credentials = _parts.Get<ControlPlaneCredentials>();
        var config = credentials.EnsureOperatorCredential("https://127.0.0.1:1");
        var serving = credentials.ServingCertificate.TargetCertificate;
        var prepared = Rotation.Start("operator");

        Rotation.Advance();

        Assert.Equal(RotationPhase.Active, Rotation.State.Phase);
        using var operatorCertificate = Pem.LoadCertificateWithKey(config.CertificatePath, config.KeyPath);
        Assert.Equal(KeyIds.Subject(prepared.Next!), KeyIds.Authority(operatorCertificate));
        var servingNow = credentials.ServingCertificate.TargetCertificate;
        Assert.NotEqual(serving.Thumbprint, servingNow.Thumbprint);
        Assert.Equal(KeyIds.Subject(prepared.Next!), KeyIds.Authority(servingNow));
    }

    [Fact]
    public async Task A_plug_in_CA_is_never_rotated_here_and_rotate_says_the_operator_rotates_it()
    {
        await _parts.DisposeAsync();
        using var root = FileCaStore.CreateRoot(SpiffeId.DefaultTrustDomain, _time, TimeSpan.FromDays(2));
        var certPath = Path.Combine(_dataDir, "plugin.crt");
        var keyPath = Path.Combine(_dataDir, "plugin.key");
        File.WriteAllText(certPath, root.ExportCertificatePem());
        File.WriteAllText(keyPath, Pem.PrivateKeyPem(root));
        _parts = await StartAsync(Options(rotateBefore: TimeSpan.FromDays(1), plugIn: new PlugInCa(certPath, keyPath, null, null)));

        var refused = Assert.Throws<RotationRefusedException>(() => Rotation.Start("operator"));
        Assert.StartsWith("the CA is the operator's own (--ca-cert): rotate it yourself", refused.Message, StringComparison.Ordinal);
        _time.Advance(TimeSpan.FromDays(1) + TimeSpan.FromHours(1)); // past the threshold: still nothing by itself
        Rotation.Advance();
        Assert.Equal(RotationPhase.None, Rotation.State.Phase);
        Assert.Equal(root.Thumbprint, Ca.SigningCertificate.Thumbprint);
        Assert.False(File.Exists(Path.Combine(_dataDir, "ca", "rotation.json")));
        Assert.True(CaAdminService.StatusOf(Rotation).PlugIn);
    }

    [Fact]
    public async Task Another_replica_on_the_same_store_follows_each_step_with_its_signer_bundle_and_config()
    {
        await using var other = await ControlPlaneParts.StartAsync(_dataDir, _time, options: Options());
        var otherRotation = other.Get<CaRotation>();

        var prepared = Rotation.Start("operator");
        otherRotation.Refresh();

        Assert.Equal(RotationPhase.Prepared, otherRotation.State.Phase);
        Assert.Equal(2, other.Get<CertificateAuthority>().Bundle.Roots.Count);
        Assert.Equal(2ul, other.Get<ConfigStore>().Current.Bundle.Sequence);
        Assert.Equal(prepared.Current.Thumbprint, other.Get<CertificateAuthority>().SigningCertificate.Thumbprint);

        Rotation.Advance(); // no sidecar here: active
        otherRotation.Refresh();

        Assert.Equal(RotationPhase.Active, otherRotation.State.Phase);
        Assert.Equal(prepared.Next!.Thumbprint, other.Get<CertificateAuthority>().SigningCertificate.Thumbprint);
        Assert.True(other.Get<CertificateAuthority>().SigningCertificate.HasPrivateKey);
    }

    [Fact]
    public async Task Another_replica_never_follows_a_record_behind_the_step_it_holds()
    {
        await using var other = await ControlPlaneParts.StartAsync(_dataDir, _time, options: Options());
        var otherRotation = other.Get<CaRotation>();
        var prepared = Rotation.Start("operator");
        Rotation.Advance(); // no sidecar here: active
        otherRotation.Refresh();
        Assert.Equal(RotationPhase.Active, otherRotation.State.Phase);

        // A record read before the step (a stale read, or one raced with the step) must not undo it.
        _parts.Get<ICaStore>().SaveRotation(prepared);
        otherRotation.Refresh();

        Assert.Equal(RotationPhase.Active, otherRotation.State.Phase);
        Assert.Equal(prepared.Next!.Thumbprint, other.Get<CertificateAuthority>().SigningCertificate.Thumbprint);
    }

    [Fact]
    public async Task A_rotation_another_replica_started_a_moment_ago_is_running_here_too_before_this_one_followed_it()
    {
        await using var other = await ControlPlaneParts.StartAsync(_dataDir, _time, options: Options());
        var started = Rotation.Start("operator");

        // No Refresh on the other replica yet: ztmctl ca rotate through it must not start a second rotation over the first.
        var refused = Assert.Throws<RotationRefusedException>(() => other.Get<CaRotation>().Start("operator"));

        Assert.StartsWith("a rotation is already running (phase prepared since ", refused.Message, StringComparison.Ordinal);
        Assert.Equal(started.Next!.Thumbprint, other.Get<CaRotation>().State.Next!.Thumbprint);
        Assert.Equal(started.Next.Thumbprint, Rotation.State.Next!.Thumbprint);
    }

    [Fact]
    public void The_phase_is_a_metric()
    {
        Rotation.Start("operator");

        var text = Scrape(_parts.Get<ControlPlaneMetrics>());

        Assert.Contains("ztm_ca_rotation_phase{phase=\"prepared\"} 1", text, StringComparison.Ordinal);
        Assert.Contains("ztm_ca_rotation_phase{phase=\"none\"} 0", text, StringComparison.Ordinal);
        Assert.Contains("ztm_ca_trust_bundle_sequence 2", text, StringComparison.Ordinal);
        Assert.Equal(2, text.Split('\n').Count(l => l.StartsWith("ztm_ca_certificate_expiry_timestamp_seconds{role=\"root\"", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_rotation_record_round_trips_and_a_damaged_one_is_refused_with_its_path()
    {
        var prepared = Rotation.Start("operator");

        var read = CaRotationState.FromBytes(prepared.ToBytes(), "rotation.json");

        Assert.Equal(prepared.Phase, read.Phase);
        Assert.Equal(prepared.Next!.Thumbprint, read.Next!.Thumbprint);
        Assert.True(read.Next.HasPrivateKey);
        Assert.Equal(prepared.BundleSequence, read.BundleSequence);
        var damaged = Assert.Throws<InvalidDataException>(() => CaRotationState.FromBytes("{\"phase\":\"sideways\"}"u8, "rotation.json"));
        Assert.StartsWith("rotation.json", damaged.Message, StringComparison.Ordinal);
    }

    private static string Scrape(ControlPlaneMetrics metrics)
    {
        using var stream = new MemoryStream();
        metrics.Registry.CollectAndExportAsTextAsync(stream).GetAwaiter().GetResult();
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private X509Certificate2 Issue(SpiffeId id)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = Ca.IssueSvid(id, new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));
        return leaf.CopyWithPrivateKey(key);
    }

    private SidecarSession Open(SpiffeId id, X509Certificate2 certificate)
    {
        id.TryGetWorkload(out var ns, out var sa);
        return _parts.Get<ConfigDistributor>().Open(id, new WorkloadRef(ns!, sa!),
            new SessionCertificate(RevocationList.NormalizedSerial(certificate), certificate.NotBefore.ToUniversalTime(), certificate.NotAfter.ToUniversalTime(), KeyIds.Authority(certificate)));
    }
}
