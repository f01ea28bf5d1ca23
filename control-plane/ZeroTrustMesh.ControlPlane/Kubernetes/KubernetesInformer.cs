using System.Net;
using k8s;
using k8s.Autorest;

namespace ZeroTrustMesh.ControlPlane.Kubernetes;

/// <summary>What an informer tells its owner: the objects of a list, each watch event, and why it is listing or waiting.</summary>
internal interface IInformerHandler<in T>
{
    /// <summary>A (re)list: <paramref name="items"/> replace everything the owner held of this resource.</summary>
    void Listed(string resource, IReadOnlyList<T> items, string resourceVersion);

    /// <summary>An ADDED, MODIFIED or DELETED event (bookmarks only move the resourceVersion and are not passed on).</summary>
    void Changed(string resource, WatchEventType type, T item);

    /// <summary>The watch's history expired (410 Gone): the next call is <see cref="Listed"/>.</summary>
    void Relisting(string resource, string resourceVersion);

    /// <summary>The list or watch failed; the informer retries after <paramref name="retryIn"/>.</summary>
    void Failed(string resource, TimeSpan retryIn, string reason);
}

/// <summary>How to list and watch one resource (every namespace): the KubernetesClient calls, and where an object keeps its resourceVersion.</summary>
internal sealed record InformerSource<T>(
    string Resource,
    Func<CancellationToken, Task<(IReadOnlyList<T> Items, string ResourceVersion)>> List,
    Func<string, Action<Exception>, CancellationToken, IAsyncEnumerable<(WatchEventType Type, T Item)>> Watch,
    Func<T, string?> ResourceVersionOf);

/// <summary>
/// client-go's list-then-watch loop, once for every follower of the Kubernetes API (policy custom resources, the
/// registry's Services, EndpointSlices and Pods):
/// 1. list, then watch from the list's resourceVersion with bookmarks;
/// 2. a watch that ends is resumed from the last resourceVersion seen (events or bookmarks); one that fails is resumed
///    after a backoff (0.5 s doubling to 30 s, with jitter; reset once a stream delivers); a stream that ends at once
///    with nothing is waited on as a failure, so a server that closes every watch is not spun on;
/// 3. a 410 Gone (history expired), as an ERROR event or as the answer, lists again: the list replaces what the owner
///    held, so nothing is lost or counted twice.
/// </summary>
internal static class KubernetesInformer
{
    public static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(500);
    public static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    /// <summary>Follows <paramref name="source"/> until <paramref name="stopping"/>; never throws.</summary>
    public static async Task RunAsync<T>(InformerSource<T> source, IInformerHandler<T> handler, TimeProvider time, CancellationToken stopping)
    {
        var backoff = MinBackoff;
        string? version = null; // null: list (again)
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                if (version is null)
                {
                    var (items, listed) = await source.List(stopping);
                    version = listed;
                    handler.Listed(source.Resource, items, listed);
                }
                Exception? failure = null;
                var events = 0;
                await foreach (var (type, item) in source.Watch(version, e => failure ??= e, stopping))
                {
                    events++;
                    backoff = MinBackoff; // the stream works
                    if (source.ResourceVersionOf(item) is { Length: > 0 } seen)
                    {
                        version = seen;
                    }
                    if (type is WatchEventType.Added or WatchEventType.Modified or WatchEventType.Deleted)
                    {
                        handler.Changed(source.Resource, type, item);
                    }
                }
                if (failure is KubernetesException { Status.Code: (int)HttpStatusCode.Gone })
                {
                    handler.Relisting(source.Resource, version ?? "");
                    version = null;
                    continue;
                }
                if (failure is not null)
                {
                    throw failure;
                }
                if (events == 0)
                {
                    await Task.Delay(Jitter(backoff), time, stopping);
                    backoff = Next(backoff);
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Gone)
            {
                handler.Relisting(source.Resource, version ?? "");
                version = null;
            }
#pragma warning disable CA1031 // a watch loop outlives every failure of the API and retries
            catch (Exception e)
#pragma warning restore CA1031
            {
                handler.Failed(source.Resource, backoff, Describe(e));
                try
                {
                    await Task.Delay(Jitter(backoff), time, stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                backoff = Next(backoff);
            }
        }
    }

    /// <summary>
    /// Stops a host's informers: cancels <paramref name="stopping"/>, then waits for the tasks <paramref name="running"/>
    /// returns (read after the cancel, under the caller's lock) to end, or for the host to give up waiting.
    /// </summary>
    public static async Task StopAsync(CancellationTokenSource stopping, Func<Task[]> running, CancellationToken cancellationToken)
    {
        await stopping.CancelAsync();
        try
        {
            await Task.WhenAll(running()).WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // stopped, or the host gave up waiting
        }
    }

    public static TimeSpan Next(TimeSpan backoff) => backoff * 2 > MaxBackoff ? MaxBackoff : backoff * 2;

    public static TimeSpan Jitter(TimeSpan backoff) => backoff * (0.8 + (0.4 * Random.Shared.NextDouble()));

    /// <summary>One line for a failed API call: the status and the server's words when it answered.</summary>
    public static string Describe(Exception e) => e switch
    {
        HttpOperationException h => $"the API answered {(int)h.Response.StatusCode} {h.Response.StatusCode}: {h.Response.Content}",
        KubernetesException k => $"the watch ended with {k.Status?.Code} {k.Status?.Reason}: {k.Status?.Message}",
        _ => e.Message,
    };
}
