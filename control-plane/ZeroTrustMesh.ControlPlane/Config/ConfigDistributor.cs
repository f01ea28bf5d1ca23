using System.Collections.Concurrent;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Channels;
using Google.Protobuf;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto.V1;
using Revocation = ZeroTrustMesh.Identity.Revocation;

namespace ZeroTrustMesh.ControlPlane.Config;

/// <summary>
/// A certificate as a session knows it: serial (normalized, as revocations name it), validity, and the key identifier
/// of the CA certificate that signed it (<see cref="KeyIds"/>): which root it chains to, during a rotation and in status.
/// </summary>
internal sealed record SessionCertificate(string Serial, DateTimeOffset NotBefore, DateTimeOffset NotAfter, string SignerKeyId = "")
{
    public static SessionCertificate Of(X509Certificate2 certificate) => new(
        RevocationList.NormalizedSerial(certificate), certificate.NotBefore.ToUniversalTime(), certificate.NotAfter.ToUniversalTime(), KeyIds.Authority(certificate));
}

/// <summary>What the control plane knows of one sidecar's config stream; <c>ztmctl status</c> shows it.</summary>
internal sealed class SidecarSession(SpiffeId id, WorkloadRef workload, SessionCertificate opened)
{
    private readonly Channel<ConfigState> _changes = Channel.CreateBounded<ConfigState>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropOldest });
    private volatile SessionCertificate _current = opened;
    private PendingPush? _pending;

    public SpiffeId Id { get; } = id;

    public WorkloadRef Workload { get; } = workload;

    /// <summary>The certificate the stream was opened with (its TLS connection's).</summary>
    public SessionCertificate Opened { get; } = opened;

    /// <summary>The certificate the sidecar holds now: the one the stream was opened with, or what it was last renewed to.</summary>
    public SessionCertificate Current
    {
        get => _current;
        set => _current = value;
    }

    /// <summary>The serial of <see cref="Current"/>, as <c>ztmctl revoke --serial</c> takes it.</summary>
    public string Serial => Current.Serial;

    /// <summary>When <see cref="Current"/> expires.</summary>
    public DateTimeOffset CertificateExpiresAt => Current.NotAfter;

    public string VersionSent { get; set; } = "";

    public string VersionApplied { get; set; } = "";

    public string NackError { get; set; } = "";

    public string LastNonce { get; set; } = "";

    private long _bundleSequence;

    /// <summary>
    /// The sequence of the trust bundle the sidecar follows, as it last said (in any answer, ACK or NACK: it applies the
    /// bundle before the policy), or of the last snapshot it ACKed; 0 until it says. CA rotation steps wait on it.
    /// </summary>
    public ulong BundleSequence => (ulong)Interlocked.Read(ref _bundleSequence);

    /// <summary>The sidecar follows bundle <paramref name="sequence"/> (or a newer one): never goes back.</summary>
    public void Follows(ulong sequence)
    {
        long seen;
        do
        {
            seen = Interlocked.Read(ref _bundleSequence);
            if ((long)sequence <= seen)
            {
                return;
            }
        }
        while (Interlocked.CompareExchange(ref _bundleSequence, (long)sequence, seen) != seen);
    }

    /// <summary>A snapshot with <paramref name="nonce"/> goes out now (<see cref="TimeProvider.GetTimestamp"/>); its answer measures push-to-ACK.</summary>
    public void Pushing(string nonce, long timestamp) => Volatile.Write(ref _pending, new PendingPush(nonce, timestamp));

    /// <summary>When the snapshot that an answer with <paramref name="nonce"/> answers was pushed: once per push, null for any other nonce.</summary>
    public long? Answered(string nonce)
    {
        var pending = Volatile.Read(ref _pending);
        return pending is not null && pending.Nonce == nonce && Interlocked.CompareExchange(ref _pending, null, pending) == pending ? pending.Timestamp : null;
    }

    private sealed record PendingPush(string Nonce, long Timestamp);

    /// <summary>The snapshot last sent, to push only when what concerns this sidecar changed.</summary>
    public PreparedSnapshot? LastSent { get; set; }

    public DateTimeOffset LastSeen { get; set; }

    public bool Connected { get; set; }

    public ChannelReader<ConfigState> Changes => _changes.Reader;

    public void Notify(ConfigState state) => _changes.Writer.TryWrite(state);

    /// <summary>The revocation among <paramref name="revocations"/> that covers a certificate of this stream, and which one; or null.</summary>
    public (Revocation Revocation, SessionCertificate Certificate)? RevokedBy(RevocationList revocations) =>
        revocations.Find(Current.Serial, Id, Current.NotBefore) is { } current ? (current, Current)
        : revocations.Find(Opened.Serial, Id, Opened.NotBefore) is { } opened ? (opened, Opened)
        : null;

    /// <summary>Ends the stream with <paramref name="status"/>: reading <see cref="Changes"/> throws it, after what was notified before.</summary>
    public void End(RpcException status) => _changes.Writer.TryComplete(status);
}

/// <summary>
/// One config snapshot, serialized once per version and <see cref="ConfigKey"/> and written as these bytes to every
/// stream it concerns (thousands of sidecars of one namespace share one). The nonce is per snapshot, not per stream: a
/// stream answers the nonce it was last sent, and never gets the same snapshot twice.
/// </summary>
internal sealed class PreparedSnapshot(string version, string nonce, byte[] bytes, UInt128 content, ulong bundleSequence = 0)
{
    public string Version { get; } = version;

    /// <summary>The sequence of the trust bundle it carries.</summary>
    public ulong BundleSequence { get; } = bundleSequence;

    public string Nonce { get; } = nonce;

    /// <summary>The serialized <see cref="ConfigSnapshot"/>.</summary>
    public byte[] Bytes { get; } = bytes;

    /// <summary>A digest of everything but version and nonce: equal digests, nothing to send.</summary>
    public UInt128 Content { get; } = content;

    public bool SameContentAs(PreparedSnapshot? other) => other is not null && (ReferenceEquals(this, other) || Content == other.Content);
}

/// <summary>
/// Every sidecar's config stream. Config changes are debounced (a burst of edits becomes one push) and then offered to
/// every connected session; each session sends only if what concerns its workload changed. The snapshot is built and
/// serialized once per version and group of workloads that receive the same resources (<see cref="ConfigState.KeyFor"/>),
/// so the per-stream work of a push is a lookup, a digest comparison and a write of shared bytes.
/// A session is one stream, not one identity: replicas of a workload share a SPIFFE ID (one service account), and each
/// of their streams must get every push. A new revocation ends, at once, every stream of a certificate it covers.
/// </summary>
internal sealed class ConfigDistributor : IDisposable
{
    public static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(100);

    /// <summary>The open streams: the push targets.</summary>
    private readonly ConcurrentDictionary<SidecarSession, byte> _connected = new();

    /// <summary>The last stream opened per identity, kept after it ends so status shows what the sidecar last applied.</summary>
    private readonly ConcurrentDictionary<SpiffeId, SidecarSession> _lastById = new();

    /// <summary>Per config state, the snapshot of each group of workloads; the entries go with the state.</summary>
    private readonly ConditionalWeakTable<ConfigState, ConcurrentDictionary<ConfigKey, PreparedSnapshot>> _snapshots = new();

    private readonly ConfigStore _store;
    private readonly ITimer _debounce;
    private RevocationList _revocations;
    private System.Collections.Immutable.ImmutableArray<ZeroTrustMesh.Policy.Kinds.CallerRestriction> _restrictions = [];
    private BundleProto? _bundle;

    private readonly bool _l4Mode;

    public ConfigDistributor(ConfigStore store, SvidIssuer issuer, ControlPlaneMetrics metrics, TimeProvider time, ControlPlaneOptions options)
    {
        _store = store;
        _l4Mode = options.L4Mode;
        _revocations = store.Current.Revocations;
        _debounce = time.CreateTimer(_ => Push(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        store.Changed += OnChanged;
        issuer.Renewed += OnRenewed;
        metrics.ObserveDistribution(() => _store.Current, () => _connected.Keys);
    }

    /// <summary>Every open stream, plus the last one of each identity that has none open (listed as disconnected).</summary>
    public IReadOnlyList<SidecarSession> Sessions
    {
        get
        {
            var connected = _connected.Keys;
            var ids = connected.Select(s => s.Id).ToHashSet();
            return [.. connected.Concat(_lastById.Values.Where(s => !s.Connected && !ids.Contains(s.Id))).OrderBy(s => s.Id.Value, StringComparer.Ordinal)];
        }
    }

    /// <summary>A sidecar connected (again): a new session, which carries over what its identity last applied.</summary>
    public SidecarSession Open(SpiffeId id, WorkloadRef workload, SessionCertificate certificate)
    {
        var session = new SidecarSession(id, workload, certificate) { Connected = true };
        if (_lastById.TryGetValue(id, out var previous))
        {
            session.VersionApplied = previous.VersionApplied;
        }
        _lastById[id] = session;
        _connected.TryAdd(session, 0);
        var state = _store.Current;
        session.Notify(state);
        // A revocation published between the caller's check and this point found no session to end.
        EndIfRevoked(session, state);
        return session;
    }

    /// <summary>The stream ended; the session stays listed (disconnected) while no other stream of its identity is open.</summary>
    public void Close(SidecarSession session)
    {
        session.Connected = false;
        _connected.TryRemove(session, out _);
    }

    /// <summary>When the certificate with this (normalized) serial expires, if a sidecar connected now holds it.</summary>
    public DateTimeOffset? ExpiryOf(string serial) =>
        _connected.Keys.Select(s => s.Current).FirstOrDefault(c => c.Serial == serial)?.NotAfter;

    /// <summary>The snapshot <paramref name="workload"/> gets at <paramref name="state"/>, built once per state and <see cref="ConfigKey"/>.</summary>
    public PreparedSnapshot SnapshotFor(ConfigState state, WorkloadRef workload) =>
        _snapshots.GetValue(state, _ => new()).GetOrAdd(state.KeyFor(workload), static (key, x) => x.Self.Build(x.State, key), (Self: this, State: state));

    private PreparedSnapshot Build(ConfigState state, ConfigKey key)
    {
        var snapshot = new ConfigSnapshot { TrustBundle = TrustBundleProto(state.Bundle) };
        // Validated here once; sidecars read the typed model, never the operator's YAML.
        snapshot.Resources.AddRange(state.For(key.Namespace, key.Service)
            .Where(r => !PolicyKinds.Builtin.TryGet(r.Key.Kind, out var kind) || kind.SentToSidecars) // AnomalyPolicy is the control plane's own
            .Select(r => r.Document.Resource.ToProto(PolicyKinds.Builtin)));
        if (key.Service is { } service)
        {
            snapshot.CallerRestrictions.AddRange(state.RestrictionsFor(new WorkloadRef(key.Namespace, service)).Select(r => r.ToProto()));
        }
        snapshot.PortModes = state.PortModesFor(key.Namespace, key.Service, _l4Mode).ToProto();
        snapshot.Revocations.AddRange(state.Revocations.Entries.Select(e => e.ToProto()));
        // The digest covers the content only; version and nonce are set afterwards.
        var digest = SHA256.HashData(snapshot.ToByteArray());
        snapshot.Version = state.Version;
        snapshot.Nonce = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        return new PreparedSnapshot(state.Version, snapshot.Nonce, snapshot.ToByteArray(), BinaryPrimitives.ReadUInt128LittleEndian(digest), state.Bundle.Sequence);
    }

    /// <summary>The trust bundle as sent in snapshots, converted once per bundle rather than once per stream and push.</summary>
    public Proto.V1.TrustBundle TrustBundleProto(Identity.TrustBundle bundle)
    {
        var cached = Volatile.Read(ref _bundle);
        if (cached?.Source != bundle)
        {
            cached = new BundleProto(bundle, Api.IdentityService.ToProto(bundle));
            Volatile.Write(ref _bundle, cached);
        }
        return cached.Proto;
    }

    private sealed record BundleProto(Identity.TrustBundle Source, Proto.V1.TrustBundle Proto);

    private void OnChanged(ConfigState state)
    {
        if (!ReferenceEquals(state.Revocations, Interlocked.Exchange(ref _revocations, state.Revocations)))
        {
            EndRevokedSessions(state);
        }
        if (!state.Restrictions.SequenceEqual(_restrictions))
        {
            // Anomaly response throttles a caller now, not after a burst of edits settles: pushed at once.
            _restrictions = state.Restrictions;
            Push();
            return;
        }
        _debounce.Change(Debounce, Timeout.InfiniteTimeSpan);
    }

    /// <summary>
    /// A revoked certificate proves nothing: its streams get this version (so the sidecar knows the list that revokes
    /// it) and then end, with the revocation as the reason.
    /// </summary>
    private void EndRevokedSessions(ConfigState state)
    {
        foreach (var session in _connected.Keys)
        {
            EndIfRevoked(session, state);
        }
    }

    private static void EndIfRevoked(SidecarSession session, ConfigState state)
    {
        if (session.RevokedBy(state.Revocations) is var (revocation, certificate))
        {
            // Named by the certificate it covers: the sidecar counts itself revoked only if that is the one it holds now.
            session.Notify(state);
            session.End(RevokedCaller.Refusal(certificate.Serial, $"certificate {certificate.Serial} of '{session.Id}' is revoked ({revocation.Describe()})"));
        }
    }

    /// <summary>A sidecar renewed with the certificate its stream knows: status and revocation checks follow the new one.</summary>
    private void OnRenewed(string previousSerial, SignedCertificate renewed)
    {
        var next = new SessionCertificate(Revocation.NormalizeSerial(renewed.Serial), renewed.NotBefore, renewed.NotAfter, renewed.SignerKeyId);
        foreach (var session in _connected.Keys.Where(s => s.Current.Serial == previousSerial))
        {
            session.Current = next;
        }
    }

    private void Push()
    {
        var state = _store.Current;
        foreach (var session in _connected.Keys)
        {
            session.Notify(state);
        }
    }

    public void Dispose() => _debounce.Dispose();
}
