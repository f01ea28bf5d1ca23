using System.Collections.Concurrent;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Threading.Channels;
using Google.Protobuf;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>What the control plane knows of one sidecar's config stream; <c>ztmctl status</c> shows it.</summary>
internal sealed class SidecarSession(SpiffeId id, WorkloadRef workload)
{
    private readonly Channel<PolicyState> _changes = Channel.CreateBounded<PolicyState>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropOldest });

    public SpiffeId Id { get; } = id;

    public WorkloadRef Workload { get; } = workload;

    /// <summary>The serial of the certificate the stream was opened with (normalized, as revocations name it).</summary>
    public string Serial { get; set; } = "";

    public string VersionSent { get; set; } = "";

    public string VersionApplied { get; set; } = "";

    public string NackError { get; set; } = "";

    public string LastNonce { get; set; } = "";

    /// <summary>The snapshot last sent, to push only when what concerns this sidecar changed.</summary>
    public PreparedSnapshot? LastSent { get; set; }

    public DateTimeOffset CertificateExpiresAt { get; set; }

    public DateTimeOffset LastSeen { get; set; }

    public bool Connected { get; set; }

    public ChannelReader<PolicyState> Changes => _changes.Reader;

    public void Notify(PolicyState state) => _changes.Writer.TryWrite(state);
}

/// <summary>
/// One config snapshot, serialized once per version and <see cref="ConfigKey"/> and written as these bytes to every
/// stream it concerns (thousands of sidecars of one namespace share one). The nonce is per snapshot, not per stream: a
/// stream answers the nonce it was last sent, and never gets the same snapshot twice.
/// </summary>
internal sealed class PreparedSnapshot(string version, string nonce, byte[] bytes, UInt128 content)
{
    public string Version { get; } = version;

    public string Nonce { get; } = nonce;

    /// <summary>The serialized <see cref="ConfigSnapshot"/>.</summary>
    public byte[] Bytes { get; } = bytes;

    /// <summary>A digest of everything but version and nonce: equal digests, nothing to send.</summary>
    public UInt128 Content { get; } = content;

    public bool SameContentAs(PreparedSnapshot? other) => other is not null && (ReferenceEquals(this, other) || Content == other.Content);
}

/// <summary>
/// Every sidecar's config stream. Store changes are debounced (a burst of edits becomes one push) and then offered to
/// every connected session; each session sends only if what concerns its workload changed. The snapshot is built and
/// serialized once per version and group of workloads that receive the same resources (<see cref="PolicyState.KeyFor"/>),
/// so the per-stream work of a push is a lookup, a digest comparison and a write of shared bytes.
/// A session is one stream, not one identity: replicas of a workload share a SPIFFE ID (one service account), and each
/// of their streams must get every push.
/// </summary>
internal sealed class ConfigDistributor : IDisposable
{
    public static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(100);

    /// <summary>The open streams: the push targets.</summary>
    private readonly ConcurrentDictionary<SidecarSession, byte> _connected = new();

    /// <summary>The last stream opened per identity, kept after it ends so status shows what the sidecar last applied.</summary>
    private readonly ConcurrentDictionary<SpiffeId, SidecarSession> _lastById = new();

    /// <summary>Per policy state, the snapshot of each group of workloads; the entries go with the state.</summary>
    private readonly ConditionalWeakTable<PolicyState, ConcurrentDictionary<ConfigKey, PreparedSnapshot>> _snapshots = new();

    private readonly PolicyStore _store;
    private readonly CertificateAuthority _ca;
    private readonly Timer _debounce;
    private BundleProto? _bundle;

    public ConfigDistributor(PolicyStore store, CertificateAuthority ca)
    {
        _store = store;
        _ca = ca;
        _debounce = new Timer(_ => Push());
        store.Changed += _ => _debounce.Change(Debounce, Timeout.InfiniteTimeSpan);
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
    public SidecarSession Open(SpiffeId id, WorkloadRef workload, string serial, DateTimeOffset certificateExpiresAt)
    {
        var session = new SidecarSession(id, workload) { Connected = true, Serial = serial, CertificateExpiresAt = certificateExpiresAt };
        if (_lastById.TryGetValue(id, out var previous))
        {
            session.VersionApplied = previous.VersionApplied;
        }
        _lastById[id] = session;
        _connected.TryAdd(session, 0);
        session.Notify(_store.Current);
        return session;
    }

    /// <summary>The stream ended; the session stays listed (disconnected) while no other stream of its identity is open.</summary>
    public void Close(SidecarSession session)
    {
        session.Connected = false;
        _connected.TryRemove(session, out _);
    }

    /// <summary>The snapshot <paramref name="workload"/> gets at <paramref name="state"/>, built once per state and <see cref="ConfigKey"/>.</summary>
    public PreparedSnapshot SnapshotFor(PolicyState state, WorkloadRef workload) =>
        _snapshots.GetValue(state, _ => new()).GetOrAdd(state.KeyFor(workload), static (key, x) => x.Self.Build(x.State, key), (Self: this, State: state));

    private PreparedSnapshot Build(PolicyState state, ConfigKey key)
    {
        var snapshot = new ConfigSnapshot { TrustBundle = TrustBundleProto(_ca.Bundle) };
        // Validated here once; sidecars read the typed model, never the operator's YAML.
        snapshot.Resources.AddRange(state.For(key.Namespace, key.Service).Select(r => r.Document.Resource.ToProto(PolicyKinds.Builtin)));
        snapshot.Revocations.AddRange(state.Revocations.Entries.Select(e => e.ToProto()));
        // The digest covers the content only; version and nonce are set afterwards.
        var digest = SHA256.HashData(snapshot.ToByteArray());
        snapshot.Version = state.Version;
        snapshot.Nonce = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        return new PreparedSnapshot(state.Version, snapshot.Nonce, snapshot.ToByteArray(), BinaryPrimitives.ReadUInt128LittleEndian(digest));
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
