using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using Prometheus;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;

namespace ZeroTrustMesh.ControlPlane.Telemetry;

/// <summary>
/// The control plane's Prometheus metrics, in a registry of their own (not prometheus-net's static default): several
/// control planes run in one test process, and each must count only what it did. Served on the metrics port
/// (<see cref="MetricsEndpoint"/>). Every label has a fixed, small set of values (no SPIFFE IDs, no serials of
/// workload certificates), and each of those series exists from the start at 0, so dashboards and alerts have data
/// before the first event.
/// </summary>
internal sealed class ControlPlaneMetrics
{
    public static readonly IReadOnlyList<string> InjectionOutcomes = ["injected", "skipped", "refused", "error"];

    /// <summary>How an SVID was issued: the proof of a first issuance, or a renewal with the current SVID.</summary>
    public static readonly IReadOnlyList<string> IssuancePaths = [JoinTokenProof.KindName, ServiceAccountTokenProof.KindName, "renewal"];

    private static readonly string[] Calls = ["sign", "renew"];

    private readonly Counter _injectionRequests;
    private readonly Counter _svidsIssued;
    private readonly Counter _svidsRefused;
    private readonly Counter _configPushes;
    private readonly Counter _configAcks;
    private readonly Counter _configNacks;
    private readonly Histogram _pushToAck;
    private readonly Gauge _caExpiry;
    private readonly Gauge _connectedSidecars;
    private readonly Gauge _sidecarsNotSynced;
    private readonly Gauge _configVersion;
    private readonly Gauge _revocations;
    private readonly Gauge _rotationPhase;
    private readonly Gauge _bundleSequence;
    private readonly Gauge _leader;

    public ControlPlaneMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        _injectionRequests = factory.CreateCounter(
            "ztm_injection_requests_total",
            "AdmissionReview requests the injection webhook answered, by outcome (injected, skipped, refused, error).",
            new CounterConfiguration { LabelNames = ["outcome"] });
        _svidsIssued = factory.CreateCounter("ztm_svid_issued_total",
            "Workload certificates (X.509-SVIDs) signed, by how the caller proved its identity: join_token, service_account_token, or renewal (its current SVID).",
            "via");
        _svidsRefused = factory.CreateCounter("ztm_svid_refused_total",
            "Signing requests refused, by call (sign, renew) and reason: invalid_request (the CSR), unauthenticated (no, unknown, spent or expired proof), permission_denied (another identity, revoked).",
            "call", "reason");
        _connectedSidecars = factory.CreateGauge("ztm_connected_sidecars", "Sidecars connected now: config streams open on this control plane.");
        _sidecarsNotSynced = factory.CreateGauge("ztm_sidecars_not_synced",
            "Connected sidecars that do not enforce the config version last pushed to them: not yet acknowledged, or rejected (NACK).");
        _configPushes = factory.CreateCounter("ztm_config_pushes_total", "Config snapshots pushed to sidecars (one per stream and version that changed what the stream's workload gets).");
        _configAcks = factory.CreateCounter("ztm_config_acks_total", "Pushed config snapshots that sidecars acknowledged (they enforce that version now).");
        _configNacks = factory.CreateCounter("ztm_config_nacks_total", "Pushed config snapshots that sidecars rejected (NACK): they keep their last good version.");
        _pushToAck = factory.CreateHistogram("ztm_config_push_to_ack_seconds", "Time from pushing a config snapshot to the sidecar's ACK of it.",
            new HistogramConfiguration { Buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
        _configVersion = factory.CreateGauge("ztm_config_version", "The config version in force (the N of vN), raised by every policy or revocation change.");
        _revocations = factory.CreateGauge("ztm_revocations", "Revocations in force (certificates and identities every sidecar refuses).");
        _leader = factory.CreateGauge("ztm_controlplane_leader",
            "1 while this control-plane replica leads (holds the Lease in Kubernetes; always standalone) and does the singleton work, else 0.");
        _caExpiry = factory.CreateGauge("ztm_ca_certificate_expiry_timestamp_seconds",
            "Unix time at which a certificate of the mesh CA expires, by role (signing: the CA certificate that signs SVIDs; intermediate; root: a root of the trust bundle) and serial.",
            "role", "serial");

        _rotationPhase = factory.CreateGauge("ztm_ca_rotation_phase",
            "CA root rotation phase: 1 for the phase the rotation is in (none, prepared, active, retiring), 0 for the others.", "phase");
        _bundleSequence = factory.CreateGauge("ztm_ca_trust_bundle_sequence", "Sequence of the trust bundle sent to sidecars; raised by every change of its roots.");

        foreach (var outcome in InjectionOutcomes)
        {
            _injectionRequests.WithLabels(outcome);
        }
        foreach (var via in IssuancePaths)
        {
            _svidsIssued.WithLabels(via);
        }
        foreach (var call in Calls)
        {
            foreach (var reason in Enum.GetValues<RefusalKind>())
            {
                _svidsRefused.WithLabels(call, Label(reason));
            }
        }
        DotNetStats.Register(Registry); // process_* (CPU, memory, start time) and dotnet_* (GC)
    }

    /// <summary>With the CA in force: its certificates' expiry is known from the start.</summary>
    public ControlPlaneMetrics(CertificateAuthority ca)
        : this() => CaCertificates(ca);

    /// <summary>With the CA and the replica's leadership, read at each scrape.</summary>
    public ControlPlaneMetrics(CertificateAuthority ca, IReplicaLeadership leadership)
        : this(ca) => Registry.AddBeforeCollectCallback(() => _leader.Set(leadership.IsLeading ? 1 : 0));

    public CollectorRegistry Registry { get; }

    /// <summary>One AdmissionReview answered: injected, skipped (not selected or already injected), refused (bad annotation), error (bad request).</summary>
    public void InjectionRequest(string outcome) => _injectionRequests.WithLabels(outcome).Inc();

    /// <param name="via">One of <see cref="IssuancePaths"/>.</param>
    public void SvidIssued(string via) => _svidsIssued.WithLabels(via).Inc();

    /// <param name="call"><c>sign</c> or <c>renew</c>.</param>
    public void SvidRefused(string call, RefusalKind reason) => _svidsRefused.WithLabels(call, Label(reason)).Inc();

    public void ConfigPushed() => _configPushes.Inc();

    /// <summary>A sidecar answered the snapshot pushed <paramref name="sincePush"/> ago: an ACK, or a NACK (<paramref name="rejected"/>).</summary>
    public void ConfigAnswered(bool rejected, TimeSpan sincePush)
    {
        if (rejected)
        {
            _configNacks.Inc();
        }
        else
        {
            _configAcks.Inc();
            _pushToAck.Observe(sincePush.TotalSeconds);
        }
    }

    /// <summary>The CA's certificates: the signing certificate, the intermediates above it, the roots of the bundle (those of a bundle before are dropped).</summary>
    public void CaCertificates(CertificateAuthority ca)
    {
        foreach (var labels in _caExpiry.GetAllLabelValues().ToList())
        {
            _caExpiry.RemoveLabelled(labels);
        }
        SetExpiry("signing", ca.SigningCertificate);
        foreach (var intermediate in ca.Intermediates)
        {
            SetExpiry("intermediate", intermediate);
        }
        foreach (var root in ca.Bundle.Roots)
        {
            SetExpiry("root", root);
        }
    }

    /// <summary>What is read at each scrape rather than counted as it happens: the config in force and the open streams.</summary>
    public void ObserveDistribution(Func<ConfigState> config, Func<ICollection<SidecarSession>> connected) =>
        Registry.AddBeforeCollectCallback(() =>
        {
            var state = config();
            if (state.Version.StartsWith('v') && long.TryParse(state.Version.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out var version))
            {
                _configVersion.Set(version);
            }
            _revocations.Set(state.Revocations.Count);
            var sessions = connected();
            _connectedSidecars.Set(sessions.Count);
            _sidecarsNotSynced.Set(sessions.Count(s => s.VersionSent.Length == 0 || s.VersionApplied != s.VersionSent));
        });

    /// <summary>The rotation's phase and bundle sequence, read at each scrape.</summary>
    public void ObserveCaRotation(Func<RotationPhase> phase, Func<ulong> bundleSequence)
    {
        Registry.AddBeforeCollectCallback(() =>
        {
            var current = phase();
            foreach (var each in Enum.GetValues<RotationPhase>())
            {
                _rotationPhase.WithLabels(CaRotation.Name(each)).Set(each == current ? 1 : 0);
            }
            _bundleSequence.Set(bundleSequence());
        });
    }

    private void SetExpiry(string role, X509Certificate2 certificate) =>
        _caExpiry.WithLabels(role, certificate.SerialNumber.ToLowerInvariant()).Set(new DateTimeOffset(certificate.NotAfter.ToUniversalTime()).ToUnixTimeSeconds());

    private static string Label(RefusalKind reason) => reason switch
    {
        RefusalKind.InvalidRequest => "invalid_request",
        RefusalKind.Unauthenticated => "unauthenticated",
        RefusalKind.PermissionDenied => "permission_denied",
        _ => "other",
    };
}
