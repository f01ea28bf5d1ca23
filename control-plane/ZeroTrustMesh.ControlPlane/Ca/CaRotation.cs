using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Telemetry;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>A rotation cannot start (one is running; the CA is the operator's own); the message says why.</summary>
internal sealed class RotationRefusedException(string message) : Exception(message);

/// <summary>What the next step of a rotation waits for, and who holds it up (named, for <c>ztmctl ca status</c>).</summary>
/// <param name="OpensAt">When the gate opens by the clock alone (active → retiring), else null.</param>
internal sealed record RotationGate(string WaitingFor, IReadOnlyList<string> Blockers, DateTimeOffset? OpensAt)
{
    public static readonly RotationGate Open = new("", [], null);

    public bool IsOpen => WaitingFor.Length == 0;
}

/// <summary>
/// The CA root rotation, one command from start to end, each step gated on what the control plane observes:
/// 1. prepare (<see cref="Start"/>): a new root is created and added to the trust bundle, which goes to every sidecar in
///    its config stream (and to the bundle file, the <c>ztm-ca-root</c> ConfigMaps and the webhook's caBundle);
/// 2. activate, once every sidecar that is connected, or was and still holds a live certificate, follows a bundle with
///    the new root (and not before sidecars had time to reconnect after this process started): new leaves are signed by
///    it, and the control plane's own certificates are issued again from it. With several replicas the sidecars of
///    every live replica count (<see cref="IBundleFollowers"/>), and every replica must serve that bundle;
/// 3. retire, once every leaf the old root signed has expired (activation + the SVID lifetime, then the clock skew):
///    the old root leaves the bundle;
/// 4. done, once every such sidecar follows that bundle: the old root is forgotten.
/// Each step is saved (<see cref="ICaStore.SaveRotation"/>) before it takes effect, so a restart resumes the phase. The
/// steps are taken by <see cref="Advance"/>, which the leading replica calls (<see cref="CaRotationService"/>).
/// </summary>
internal sealed class CaRotation
{
    private readonly CertificateAuthority _ca;
    private readonly ICaStore _store;
    private readonly ConfigStore _config;
    private readonly IBundleFollowers _followers;
    private readonly ControlPlaneCredentials _credentials;
    private readonly ControlPlaneOptions _options;
    private readonly ControlPlaneMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<CaRotation> _logger;
    private readonly Lock _gate = new();
    private readonly DateTimeOffset _reconnectedBy;
    private volatile CaRotationState _state;
    private string _lastWait = "";

    public CaRotation(CertificateAuthority ca, ICaStore store, ConfigStore config, IBundleFollowers followers, ControlPlaneCredentials credentials,
        ControlPlaneOptions options, ControlPlaneMetrics metrics, TimeProvider time, ILogger<CaRotation> logger)
    {
        _ca = ca;
        _store = store;
        _config = config;
        _followers = followers;
        _credentials = credentials;
        _options = options;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _reconnectedBy = time.GetUtcNow() + options.CaRotationReconnectGrace;
        _state = (IsPlugIn ? null : store.LoadRotation()) ?? CaRotationState.Initial(ca.SigningCertificate);
        if (!IsPlugIn)
        {
            TakeEffect(_state); // what the store holds is what the CA is, whoever built it
        }
        metrics.ObserveCaRotation(() => _state.Phase, () => _state.BundleSequence);
    }

    /// <summary>
    /// Before anything signs: makes the CA what the rotation record says (a restart during a rotation, or after one). A
    /// plug-in CA has no record.
    /// </summary>
    /// <exception cref="IOException">The record cannot be read.</exception>
    /// <exception cref="InvalidDataException">The record does not parse.</exception>
    public static void Resume(CertificateAuthority ca, ICaStore store, ControlPlaneOptions options)
    {
        if (options.PlugInCa is null && store.LoadRotation() is { } state)
        {
            ca.Use(state.Current, state.Bundle(options.TrustDomain));
        }
    }

    /// <summary>The operator's own CA (plug-in): it is rotated by the operator, never here.</summary>
    public bool IsPlugIn => _options.PlugInCa is not null;

    public CaRotationState State => _state;

    /// <summary>When a rotation starts by itself: <c>--ca-rotate-before</c> ahead of the signing root's expiry.</summary>
    public DateTimeOffset AutoRotateAt => _state.Current.NotAfter.ToUniversalTime() - _options.CaRotateBefore;

    /// <summary>Prepare: a new root joins the bundle. Refused while a rotation runs, and for a plug-in CA.</summary>
    /// <exception cref="RotationRefusedException">A rotation is running, or the CA is the operator's own.</exception>
    /// <exception cref="IOException">The new root could not be saved, or the record could not be read; nothing changed.</exception>
    /// <exception cref="InvalidDataException">The record does not parse; nothing changed.</exception>
    public CaRotationState Start(string by)
    {
        if (IsPlugIn)
        {
            throw new RotationRefusedException(
                "the CA is the operator's own (--ca-cert): rotate it yourself (add the new root to --ca-bundle, then switch --ca-cert/--ca-key, restarting the control plane at each step)");
        }
        lock (_gate)
        {
            Refresh(); // a rotation another replica started a moment ago is running, even if this one has not followed it yet
            var state = _state;
            if (state.Phase != RotationPhase.None)
            {
                throw new RotationRefusedException($"a rotation is already running (phase {Name(state.Phase)} since {state.PhaseSince:yyyy-MM-ddTHH:mm:ssZ}, started by {state.StartedBy}); see ztmctl ca status");
            }
            var now = _time.GetUtcNow();
            var next = FileCaStore.CreateRoot(_options.TrustDomain, _time, _options.CaRootLifetime, generation: true);
            Step("prepare", state with
            {
                Phase = RotationPhase.Prepared,
                Next = next,
                Previous = null,
                BundleSequence = state.BundleSequence + 1,
                PhaseSince = now,
                PreviousLeavesExpireBy = null,
                StartedBy = by,
            }, $"root {RootFingerprint.Short(next)} (not after {next.NotAfter.ToUniversalTime():O}) added to the trust bundle; it signs once every sidecar follows bundle {state.BundleSequence + 1}");
            return _state;
        }
    }

    /// <summary>
    /// Starts a rotation by itself when the signing root nears expiry, then takes every step whose gate is open.
    /// Returns the gate of the step it stopped at (open when no rotation runs).
    /// </summary>
    /// <exception cref="IOException">A step could not be saved (or the record read): it did not happen; the next call tries again.</exception>
    /// <exception cref="InvalidDataException">The record does not parse.</exception>
    public RotationGate Advance()
    {
        lock (_gate)
        {
            Refresh(); // a new leader goes on from the step the last one saved, not from the one it last followed
            if (!IsPlugIn && _state.Phase == RotationPhase.None && _time.GetUtcNow() >= AutoRotateAt)
            {
                Start($"controlplane (root expires {_state.Current.NotAfter.ToUniversalTime():O})");
            }
            while (true)
            {
                var state = _state;
                var gate = GateOf(state);
                if (state.Phase == RotationPhase.None)
                {
                    return gate;
                }
                if (!gate.IsOpen)
                {
                    var wait = gate.Blockers.Count == 0 ? gate.WaitingFor : $"{gate.WaitingFor}: {string.Join("; ", gate.Blockers)}";
                    if (wait != _lastWait)
                    {
                        _lastWait = wait;
                        ControlPlaneLog.CaRotationWaiting(_logger, Name(state.Phase), wait);
                    }
                    return gate;
                }
                Next(state);
            }
        }
    }

    /// <summary>
    /// Follows a step another replica took (it saved it in the shared store): the signer, the bundle and a config version
    /// for this replica's sidecars, the bundle file ztmctl's config names, and the operator credential when the signer
    /// changed, as if the step were taken here. Nothing when the store holds what this replica has, or an earlier step.
    /// </summary>
    /// <exception cref="IOException">The record cannot be read.</exception>
    /// <exception cref="InvalidDataException">The record does not parse.</exception>
    /// <exception cref="UnauthorizedAccessException">The bundle file cannot be written.</exception>
    public void Refresh()
    {
        if (IsPlugIn)
        {
            return;
        }
        lock (_gate)
        {
            // Read under the lock: a record read before this replica's own step, applied after it, would undo the step.
            if (_store.LoadRotation() is not { } stored || !IsAhead(stored, _state))
            {
                return;
            }
            var signerChanged = stored.Current.Thumbprint != _state.Current.Thumbprint;
            _store.Followed(stored); // first: when it cannot be written, nothing changed and the next poll tries again
            _state = stored;
            _lastWait = "";
            TakeEffect(stored);
            if (signerChanged)
            {
                _credentials.RenewFromCurrentSigner(); // the operator credential ztmctl uses with this replica, as the leader does
            }
            ControlPlaneLog.CaRotationStep(_logger, "followed", Name(stored.Phase), stored.BundleSequence, RootFingerprint.Short(stored.Current),
                string.Join(",", stored.Roots.Select(RootFingerprint.Short)), stored.StartedBy ?? "", "a step another replica took");
        }
    }

    /// <summary>
    /// Whether <paramref name="stored"/> is a later step than <paramref name="held"/>: a rotation only goes forward. Each
    /// bundle sequence has two phases, in order: prepared then active (the new root's), retiring then none (its end).
    /// </summary>
    private static bool IsAhead(CaRotationState stored, CaRotationState held)
    {
        static int Order(RotationPhase phase) => phase is RotationPhase.Active or RotationPhase.None ? 1 : 0;
        return stored.BundleSequence != held.BundleSequence
            ? stored.BundleSequence > held.BundleSequence
            : Order(stored.Phase) > Order(held.Phase);
    }

    /// <summary>What the next step waits for now.</summary>
    public RotationGate Gate() => GateOf(_state);

    /// <summary>What the sidecars of every live replica follow, each sidecar once.</summary>
    public BundleFollowers Followers() => _followers.Read();

    /// <summary>Of the sidecars a step that waits for sidecars counts (each once, across replicas), how many, and how many follow bundle <paramref name="sequence"/>.</summary>
    public (uint Counted, uint Following) Following(BundleFollowers followers, ulong sequence)
    {
        var now = _time.GetUtcNow();
        var counted = followers.Sidecars.Where(s => s.Counts(now)).ToList();
        return ((uint)counted.Count, (uint)counted.Count(s => s.BundleSequence >= sequence));
    }

    /// <summary>Which root signed a certificate, by the signer's key identifier: "current", "next", "previous", or "" (another CA).</summary>
    public string RoleOfSigner(string signerKeyId)
    {
        var state = _state;
        return signerKeyId.Length == 0 ? ""
            : signerKeyId == KeyIds.Subject(state.Current) ? "current"
            : state.Next is { } next && signerKeyId == KeyIds.Subject(next) ? "next"
            : state.Previous is { } previous && signerKeyId == KeyIds.Subject(previous) ? "previous"
            : "";
    }

    private RotationGate GateOf(CaRotationState state)
    {
        var now = _time.GetUtcNow();
        switch (state.Phase)
        {
            case RotationPhase.Prepared:
                return FollowersGate(state.BundleSequence, now, $"every sidecar to follow trust bundle {state.BundleSequence} (with the new root) before it signs");
            case RotationPhase.Active:
                var opensAt = state.PreviousLeavesExpireBy!.Value + _options.CaRotationSkew;
                return now >= opensAt
                    ? RotationGate.Open
                    : new RotationGate($"the leaves the previous root signed to expire (by {state.PreviousLeavesExpireBy:yyyy-MM-ddTHH:mm:ssZ}, + {Identity.Durations.Format(_options.CaRotationSkew)} clock skew) before it leaves the bundle", [], opensAt);
            case RotationPhase.Retiring:
                return FollowersGate(state.BundleSequence, now, $"every sidecar to follow trust bundle {state.BundleSequence} (without the previous root)");
            default:
                return RotationGate.Open;
        }
    }

    private RotationGate FollowersGate(ulong sequence, DateTimeOffset now, string waitingFor)
    {
        if (now < _reconnectedBy)
        {
            // A sidecar known before a restart is known again only once it reconnects.
            return new RotationGate($"sidecars to reconnect to this control plane (started recently) before counting who follows bundle {sequence}", [], _reconnectedBy);
        }
        var followers = _followers.Read();
        var blockers = new List<string>();
        if (followers.Problem is { } problem)
        {
            blockers.Add(problem); // a replica's sidecars unknown are not sidecars that follow
        }
        foreach (var replica in followers.Replicas)
        {
            if (replica.Problem is { } unreadable)
            {
                blockers.Add($"replica {replica.Replica} ({unreadable})");
            }
            else if (replica.BundleSequence < sequence)
            {
                // It has not followed the step yet: a sidecar that reaches it now would get the older bundle.
                blockers.Add($"replica {replica.Replica} (serves bundle {replica.BundleSequence})");
            }
        }
        foreach (var sidecar in followers.Sidecars)
        {
            if (sidecar.BundleSequence >= sequence || !sidecar.Counts(now))
            {
                continue;
            }
            var held = sidecar.BundleSequence == 0 ? "has not said which bundle it follows" : $"follows bundle {sidecar.BundleSequence}";
            var elsewhere = sidecar.Replica == followers.Self ? "" : $" to replica {sidecar.Replica}";
            blockers.Add(sidecar.Connected
                ? $"{sidecar.SpiffeId} (connected{elsewhere}, {held})"
                // Down or unreachable, but it may come back with a live certificate and a bundle without the new root.
                : $"{sidecar.SpiffeId} (not connected{elsewhere} since {sidecar.LastSeen:yyyy-MM-ddTHH:mm:ssZ}, {held}, holds a certificate until {sidecar.CertificateExpiresAt:yyyy-MM-ddTHH:mm:ssZ})");
        }
        return blockers.Count == 0 ? RotationGate.Open : new RotationGate(waitingFor, blockers, null);
    }

    private void Next(CaRotationState state)
    {
        var now = _time.GetUtcNow();
        switch (state.Phase)
        {
            case RotationPhase.Prepared:
                // Every leaf the old root signs from here on is signed before this instant; none outlives the old root.
                var lastLeaf = now + _options.SvidTtl;
                var oldRootEnds = state.Current.NotAfter.ToUniversalTime();
                var activated = state with
                {
                    Phase = RotationPhase.Active,
                    Current = state.Next!,
                    Next = null,
                    Previous = X509CertificateLoader.LoadCertificate(state.Current.RawData), // its key is dropped here
                    PhaseSince = now,
                    PreviousLeavesExpireBy = lastLeaf < oldRootEnds ? lastLeaf : oldRootEnds,
                };
                Step("activate", activated, $"root {RootFingerprint.Short(activated.Current)} signs; the previous root {RootFingerprint.Short(activated.Previous)} stays trusted until {activated.PreviousLeavesExpireBy + _options.CaRotationSkew:O}");
                _credentials.RenewFromCurrentSigner(); // the operator credential too: it must outlive the previous root
                break;
            case RotationPhase.Active:
                Step("retire", state with { Phase = RotationPhase.Retiring, BundleSequence = state.BundleSequence + 1, PhaseSince = now },
                    $"root {RootFingerprint.Short(state.Previous!)} left the trust bundle (bundle {state.BundleSequence + 1})");
                break;
            case RotationPhase.Retiring:
                Step("done", state with { Phase = RotationPhase.None, Previous = null, PhaseSince = now, PreviousLeavesExpireBy = null },
                    $"every sidecar follows bundle {state.BundleSequence}; the previous root {RootFingerprint.Short(state.Previous!)} is deleted");
                break;
        }
    }

    /// <summary>Saves <paramref name="next"/>, then makes it take effect: the signer, the bundle, a config version for sidecars.</summary>
    private void Step(string step, CaRotationState next, string detail)
    {
        _store.SaveRotation(next);
        _state = next;
        _lastWait = "";
        TakeEffect(next);
        ControlPlaneLog.CaRotationStep(_logger, step, Name(next.Phase), next.BundleSequence, RootFingerprint.Short(next.Current),
            string.Join(",", next.Roots.Select(RootFingerprint.Short)), next.StartedBy ?? "", detail);
    }

    private void TakeEffect(CaRotationState state)
    {
        var bundle = state.Bundle(_options.TrustDomain);
        _ca.Use(state.Current, bundle);
        _config.PublishBundle(bundle, "ca-rotation", $"CA rotation: {Name(state.Phase)}");
        _metrics.CaCertificates(_ca);
    }

    public static string Name(RotationPhase phase) => phase.ToString().ToLowerInvariant();
}
