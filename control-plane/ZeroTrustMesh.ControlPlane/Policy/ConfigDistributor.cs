using System.Collections.Concurrent;
using System.Threading.Channels;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;

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

    private readonly PolicyStore _store;
    private readonly Timer _debounce;

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
