using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>What the control plane knows of one sidecar's config stream; <c>ztmctl status</c> shows it.</summary>
internal sealed class SidecarSession(SpiffeId id, WorkloadRef workload)
{
    private readonly Channel<PolicyState> _changes = Channel.CreateBounded<PolicyState>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropOldest });

    public SpiffeId Id { get; } = id;

    public WorkloadRef Workload { get; } = workload;

    public string VersionSent { get; set; } = "";

    public string VersionApplied { get; set; } = "";

    public string NackError { get; set; } = "";

    public string LastNonce { get; set; } = "";

    /// <summary>The content last sent, to push only when what concerns this sidecar changed.</summary>
    public string LastContent { get; set; } = "";

    public DateTimeOffset CertificateExpiresAt { get; set; }

    public DateTimeOffset LastSeen { get; set; }

    public bool Connected { get; set; }

    public ChannelReader<PolicyState> Changes => _changes.Reader;

    public void Notify(PolicyState state) => _changes.Writer.TryWrite(state);
}

/// <summary>What one workload receives at one policy version: built once, shared (read-only) by every stream of it.</summary>
/// <param name="Content">The resources' YAML joined, compared with what a stream last sent to skip unchanged pushes.</param>
internal sealed record WorkloadConfig(string Content, IReadOnlyList<PolicyResourceText> Resources);

/// <summary>
/// Every sidecar's config stream. Store changes are debounced (a burst of edits becomes one push) and then offered to
/// every connected session; each session sends only if the resources that concern its workload changed.
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

    /// <summary>Per policy state, each workload's view of it; the entries go with the state.</summary>
    private readonly ConditionalWeakTable<PolicyState, ConcurrentDictionary<WorkloadRef, WorkloadConfig>> _configs = new();

    private readonly PolicyStore _store;
    private readonly Timer _debounce;
    private BundleProto? _bundle;

    public ConfigDistributor(PolicyStore store)
    {
        _store = store;
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
    public SidecarSession Open(SpiffeId id, WorkloadRef workload)
    {
        var session = new SidecarSession(id, workload) { Connected = true };
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

    /// <summary>
    /// The resources of <paramref name="state"/> that select <paramref name="workload"/>, computed once per state and
    /// workload: a push reaches every stream at once, and replicas of a workload would each repeat the same work.
    /// </summary>
    public WorkloadConfig ConfigFor(PolicyState state, WorkloadRef workload) =>
        _configs.GetValue(state, _ => new()).GetOrAdd(workload, static (w, s) =>
        {
            var resources = s.For(w);
            return new WorkloadConfig(string.Join("\n---\n", resources.Select(r => r.Yaml)),
                [.. resources.Select(r => new PolicyResourceText { Key = r.KeyText, Yaml = r.Yaml })]);
        }, state);

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
