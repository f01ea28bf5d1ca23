using System.Net;
using k8s;
using k8s.Autorest;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using k8s.Models;

namespace ZeroTrustMesh.ControlPlane.Coordination;

/// <summary>
/// Leadership among control-plane replicas in Kubernetes: KubernetesClient's <see cref="LeaderElector"/> on a
/// <c>coordination.k8s.io/v1</c> Lease (<see cref="LeaderElectionOptions.DefaultLeaseName"/> in the control plane's
/// namespace), the algorithm of client-go.
/// 1. Every replica tries to take or renew the Lease every retry period; the holder that renews stays leader. A holder
///    that stopped renewing (killed, partitioned) is replaced once its Lease is older than the lease duration.
/// 2. A leadership term starts when the elector takes the Lease and ends when it gives up (no renewal within the renew
///    deadline) or sees another holder; the term's token is cancelled at that moment, so leader-only work stops before
///    another replica can have taken over (the renew deadline is shorter than the lease duration).
/// 3. On a graceful stop the holder releases the Lease (as client-go's <c>ReleaseOnCancel</c>): the next replica takes
///    over at its next try, not a lease duration later.
/// </summary>
internal sealed class KubernetesLeadership : IReplicaLeadership, IHostedService, IDisposable
{
    private readonly IKubernetes _client;
    private readonly string _namespace;
    private readonly LeaderElectionOptions _options;
    private readonly ILogger<KubernetesLeadership> _logger;
    private readonly LeaderElector _elector;
    private readonly CancellationTokenSource _stopping = new();
    private int _disposed;
    private readonly Lock _gate = new();
    private CancellationTokenSource? _term;
    private TaskCompletionSource _termStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _running = Task.CompletedTask;
    private volatile string? _leader;

    public KubernetesLeadership(IKubernetes client, string @namespace, LeaderElectionOptions options, ILogger<KubernetesLeadership> logger)
    {
        _client = client;
        _namespace = @namespace;
        _options = options;
        _logger = logger;
        _elector = new LeaderElector(new LeaderElectionConfig(new LeaseLock(client, @namespace, options.LeaseName, options.Identity))
        {
            LeaseDuration = options.LeaseDuration,
            RenewDeadline = options.RenewDeadline,
            RetryPeriod = options.RetryPeriod,
        });
        _elector.OnStartedLeading += StartTerm;
        _elector.OnStoppedLeading += EndTerm;
        _elector.OnNewLeader += leader =>
        {
            if (string.IsNullOrEmpty(leader))
            {
                _leader = null; // released: nobody leads until a replica takes it
                return;
            }
            _leader = leader;
            CoordinationLog.LeaderObserved(_logger, leader, _namespace, _options.LeaseName);
            if (leader != _options.Identity)
            {
                EndTerm(); // another holder: stop now, not at the renew deadline
            }
        };
    }

    public string Identity => _options.Identity;

    public bool IsLeading
    {
        get
        {
            lock (_gate)
            {
                return _term is { IsCancellationRequested: false };
            }
        }
    }

    /// <summary>The holder of the Lease as last seen: this replica while it leads, else the one its last try found.</summary>
    public string? Leader => IsLeading ? _options.Identity : _leader;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _running = Task.Run(() => ElectAsync(_stopping.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var wasLeading = IsLeading;
        EndTerm();
        await _stopping.CancelAsync();
        try
        {
            await _running.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // stopped, or the host gave up waiting
        }
        if (wasLeading)
        {
            await ReleaseAsync(cancellationToken);
        }
    }

    public async Task RunWhileLeadingAsync(Func<CancellationToken, Task> work, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            CancellationToken term;
            try
            {
                term = await NextTermAsync(stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            using var leading = CancellationTokenSource.CreateLinkedTokenSource(term, stopping);
            try
            {
                await work(leading.Token);
                await Task.Delay(Timeout.Infinite, leading.Token); // work that ended early waits for the term's end
            }
            catch (OperationCanceledException) when (leading.IsCancellationRequested)
            {
                // the term ended, or the control plane is stopping
            }
        }
    }

    /// <summary>The token of the term in force, once there is one.</summary>
    private async Task<CancellationToken> NextTermAsync(CancellationToken stopping)
    {
        while (true)
        {
            Task started;
            lock (_gate)
            {
                if (_term is { IsCancellationRequested: false } term)
                {
                    return term.Token;
                }
                started = _termStarted.Task;
            }
            await started.WaitAsync(stopping);
        }
    }

    private async Task ElectAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await _elector.RunAndTryToHoldLeadershipForeverAsync(stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // the election outlives every failure of the API and tries again
            catch (Exception e)
#pragma warning restore CA1031
            {
                CoordinationLog.LeaderElectionFailed(_logger, e.Message, _options.RetryPeriod.TotalSeconds);
                try
                {
                    await Task.Delay(_options.RetryPeriod, stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private void StartTerm()
    {
        lock (_gate)
        {
            _term?.Dispose();
            _term = new CancellationTokenSource();
            _leader = _options.Identity;
            var started = _termStarted;
            _termStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            started.SetResult();
        }
        CoordinationLog.LeadershipStarted(_logger, _options.Identity, _namespace, _options.LeaseName);
    }

    private void EndTerm()
    {
        CancellationTokenSource? ended;
        lock (_gate)
        {
            ended = _term is { IsCancellationRequested: false } term ? term : null;
            ended?.Cancel();
        }
        if (ended is not null)
        {
            CoordinationLog.LeadershipLost(_logger, _options.Identity, _namespace, _options.LeaseName);
        }
    }

    /// <summary>Gives the Lease up (holder empty, expired), if this replica still holds it; a failure only costs the next leader a lease duration.</summary>
    private async Task ReleaseAsync(CancellationToken cancellation)
    {
        try
        {
            var lease = await _client.CoordinationV1.ReadNamespacedLeaseAsync(_options.LeaseName, _namespace, cancellationToken: cancellation);
            if (lease.Spec?.HolderIdentity != _options.Identity)
            {
                return;
            }
            lease.Spec.HolderIdentity = ""; // client-go's release: an empty holder, which any replica may take at once
            lease.Spec.LeaseDurationSeconds = 1;
            lease.Spec.RenewTime = DateTime.UtcNow;
            await _client.CoordinationV1.ReplaceNamespacedLeaseAsync(lease, _options.LeaseName, _namespace, cancellationToken: cancellation);
            CoordinationLog.LeaseReleased(_logger, _options.Identity, _namespace, _options.LeaseName);
        }
        catch (Exception e) when (e is HttpOperationException or HttpRequestException or OperationCanceledException or IOException)
        {
            CoordinationLog.LeaseNotReleased(_logger, _namespace, _options.LeaseName, e is HttpOperationException h ? $"{(int)h.Response.StatusCode} {h.Response.StatusCode}" : e.Message);
        }
    }

    /// <summary>Idempotent: the container disposes the one instance once per registration (store or leadership, and hosted service).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        _stopping.Cancel();
        _stopping.Dispose();
        lock (_gate)
        {
            _term?.Dispose();
        }
        _elector.Dispose();
    }
}
