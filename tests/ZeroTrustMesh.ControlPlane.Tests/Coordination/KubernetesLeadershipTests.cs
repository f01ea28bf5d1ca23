using System.Diagnostics;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests.Coordination;

/// <summary>
/// Leadership on a Lease through KubernetesClient's LeaderElector against the Kubernetes API double, with short but
/// real timings (lease 2 s, renew deadline 1.5 s, retry 0.25 s): one replica leads and renews, another takes over when
/// it stops or dies, and losing the Lease cancels the leader-only work at once.
/// </summary>
public sealed class KubernetesLeadershipTests : IAsyncLifetime
{
    private const string Namespace = "ztm-system";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private static readonly LeaderElectionOptions Timing = new(
        LeaderElectionOptions.DefaultLeaseName, "", TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(1500), TimeSpan.FromMilliseconds(250));

    private readonly CollectingLogs _logs = new();
    private readonly List<Replica> _replicas = [];
    private KubernetesApiDouble _api = null!;

    public async Task InitializeAsync() => _api = await KubernetesApiDouble.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var replica in _replicas)
        {
            await replica.DisposeAsync();
        }
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task One_replica_leads_and_renews_the_lease_and_the_other_knows_who_leads()
    {
        var a = await StartAsync("controlplane-a");
        var b = await StartAsync("controlplane-b");

        var first = await Task.WhenAny(a.Leading.Task, b.Leading.Task).WaitAsync(Timeout);
        var (leader, follower) = first == a.Leading.Task ? (a, b) : (b, a);
        var lease = Lease()!;
        Assert.Equal(leader.Name, lease.Spec.HolderIdentity);
        Assert.Equal(2, lease.Spec.LeaseDurationSeconds);
        Assert.True(leader.Leadership.IsLeading);
        Assert.False(follower.Leadership.IsLeading);
        Assert.False(follower.Leading.Task.IsCompleted, "both replicas ran the leader-only work");

        // Renewals: the holder moves renewTime on, again and again, and stays the holder.
        var renewed = lease.Spec.RenewTime;
        await _api.WaitForAsync(_ => Lease()!.Spec.RenewTime > renewed, Timeout);
        renewed = Lease()!.Spec.RenewTime;
        await _api.WaitForAsync(_ => Lease()!.Spec.RenewTime > renewed, Timeout);
        Assert.Equal(leader.Name, Lease()!.Spec.HolderIdentity);
        Assert.Equal(0, Lease()!.Spec.LeaseTransitions ?? 0);

        await _api.WaitForAsync(_ => follower.Leadership.Leader == leader.Name, Timeout);
        Assert.Equal(leader.Name, leader.Leadership.Leader);
        Assert.False(follower.Leading.Task.IsCompleted);
    }

    [Fact]
    public async Task A_leader_that_dies_is_replaced_within_the_lease_duration_and_one_that_stops_hands_over_at_once()
    {
        var a = await StartAsync("controlplane-a");
        await a.Leading.Task.WaitAsync(Timeout);
        var b = await StartAsync("controlplane-b");
        await _api.WaitForAsync(_ => b.Leadership.Leader == a.Name, Timeout);

        // Dies: no release, no more renewals. B may take the Lease once it is a lease duration old (as B observed it).
        var lastRenewal = Lease()!.Spec.RenewTime!.Value;
        a.Die();
        await b.Leading.Task.WaitAsync(Timeout);
        var takenAfter = DateTime.UtcNow - lastRenewal;
        Assert.Equal(b.Name, Lease()!.Spec.HolderIdentity);
        Assert.Equal(1, Lease()!.Spec.LeaseTransitions);
        // Within the lease duration of B's last look at A's renewal, which is at most a retry period (and its jitter) old.
        Assert.True(takenAfter < Timing.LeaseDuration + (3 * Timing.RetryPeriod) + TimeSpan.FromMilliseconds(500), $"took over {takenAfter.TotalMilliseconds:0} ms after the last renewal");

        // A graceful stop releases the Lease: C takes it at its next try, not a lease duration later.
        var c = await StartAsync("controlplane-c");
        await _api.WaitForAsync(_ => c.Leadership.Leader == b.Name, Timeout);
        var stopping = Stopwatch.StartNew();
        await b.StopAsync();
        Assert.True(b.WorkCancelled.Task.IsCompleted, "the leader-only work was not cancelled before the Lease was released");
        await c.Leading.Task.WaitAsync(Timeout);
        Assert.True(stopping.Elapsed < Timing.LeaseDuration, $"took over {stopping.ElapsedMilliseconds} ms after the graceful stop");
        Assert.Contains(_logs.Lines, l => l.StartsWith("Lease released: controlplane-b ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Losing_the_lease_to_another_holder_cancels_the_leader_only_work_at_once_and_it_runs_again_when_regained()
    {
        var a = await StartAsync("controlplane-a");
        await a.Leading.Task.WaitAsync(Timeout);

        // Another holder takes the Lease (say, after a partition healed on its side): A sees it at its next renewal.
        var taken = await TakeLeaseAsync("intruder");
        await a.WorkCancelled.Task.WaitAsync(Timeout);
        Assert.True(taken.Elapsed < Timing.RenewDeadline, $"the work was cancelled {taken.ElapsedMilliseconds} ms after the Lease was taken");
        Assert.False(a.Leadership.IsLeading);
        Assert.Contains(_logs.Lines, l => l.StartsWith("leadership lost: controlplane-a ", StringComparison.Ordinal));

        // The intruder stops renewing: A takes the Lease back and the work runs again.
        await _api.WaitForAsync(_ => a.Starts >= 2, Timeout);
        Assert.Equal(a.Name, Lease()!.Spec.HolderIdentity);
    }

    [Fact]
    public async Task A_leader_that_cannot_reach_the_api_stops_its_work_within_the_renew_deadline_before_another_may_lead()
    {
        var a = await StartAsync("controlplane-a");
        await a.Leading.Task.WaitAsync(Timeout);

        _api.Stall(r => r.Path.Value!.Contains("/leases/", StringComparison.Ordinal), 1000);
        await a.WorkCancelled.Task.WaitAsync(Timeout);
        // The Lease as stored holds the last renewal that got through before the stall (read earlier, a renewal in
        // between made the work look late: 2,018 ms in one CI run).
        var stoppedAfter = DateTime.UtcNow - Lease()!.Spec.RenewTime!.Value;
        Assert.False(a.Leadership.IsLeading);

        // Stopped before the Lease could pass to another replica: its last renewal is less than a lease duration old.
        Assert.True(stoppedAfter < Timing.LeaseDuration, $"the work stopped {stoppedAfter.TotalMilliseconds:0} ms after the last renewal");

        // The API answers again: the Lease is still A's, it renews, and the work runs again.
        _api.Heal();
        await _api.WaitForAsync(_ => a.Starts >= 2, Timeout);
    }

    /// <summary>Writes another holder into the Lease (again, if the holder renewed in between: 409 Conflict); timed from the write.</summary>
    private async Task<Stopwatch> TakeLeaseAsync(string holder)
    {
        var client = _api.CreateClient();
        while (true)
        {
            var lease = Lease()!;
            lease.Spec.HolderIdentity = holder;
            lease.Spec.RenewTime = DateTime.UtcNow;
            lease.Spec.LeaseDurationSeconds = 2;
            try
            {
                var taken = Stopwatch.StartNew();
                await client.CoordinationV1.ReplaceNamespacedLeaseAsync(lease, lease.Metadata.Name, Namespace);
                return taken;
            }
            catch (k8s.Autorest.HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.Conflict)
            {
                // renewed meanwhile
            }
        }
    }

    private V1Lease? Lease() => _api.Get<V1Lease>("coordination.k8s.io/v1", "leases", Namespace, LeaderElectionOptions.DefaultLeaseName);

    private async Task<Replica> StartAsync(string name)
    {
        var factory = LoggerFactory.Create(l => l.AddProvider(_logs));
        var leadership = new KubernetesLeadership(_api.CreateClient(), Namespace, Timing with { Identity = name }, factory.CreateLogger<KubernetesLeadership>());
        var replica = new Replica(name, leadership, factory);
        _replicas.Add(replica);
        await leadership.StartAsync(CancellationToken.None);
        return replica;
    }

    /// <summary>One replica's leadership and a leader-only work that records when it runs and when it is cancelled.</summary>
    private sealed class Replica : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stopping = new();
        private readonly ILoggerFactory _factory;
        private readonly Task _work;
        private int _starts;
        private bool _disposed;

        public Replica(string name, KubernetesLeadership leadership, ILoggerFactory factory)
        {
            Name = name;
            Leadership = leadership;
            _factory = factory;
            _work = leadership.RunWhileLeadingAsync(async leading =>
            {
                Interlocked.Increment(ref _starts);
                Leading.TrySetResult();
                try
                {
                    await Task.Delay(System.Threading.Timeout.Infinite, leading);
                }
                finally
                {
                    WorkCancelled.TrySetResult();
                }
            }, _stopping.Token);
        }

        public string Name { get; }

        public KubernetesLeadership Leadership { get; }

        public TaskCompletionSource Leading { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource WorkCancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Starts => Volatile.Read(ref _starts);

        /// <summary>As a host stops: the leader-only services first, then the leadership (which releases the Lease).</summary>
        public async Task StopAsync()
        {
            await _stopping.CancelAsync();
            await _work;
            await Leadership.StopAsync(CancellationToken.None);
        }

        /// <summary>A killed process: nothing more is sent, nothing released.</summary>
        public void Die()
        {
            _disposed = true;
            Leadership.Dispose();
        }

        public async ValueTask DisposeAsync()
        {
            if (!_disposed)
            {
                _disposed = true;
                await StopAsync();
                Leadership.Dispose();
            }
            _stopping.Dispose();
            _factory.Dispose();
        }
    }
}
