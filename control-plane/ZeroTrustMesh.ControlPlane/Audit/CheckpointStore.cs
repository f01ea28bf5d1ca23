using System.Globalization;
using System.IO.Compression;
using System.Text;
using k8s;
using k8s.Models;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Kubernetes;
using ZeroTrustMesh.DecisionLog;

namespace ZeroTrustMesh.ControlPlane.Audit;

/// <summary>Where the control plane keeps the decision-log checkpoints sidecars sent (issue 19, section 4).</summary>
public interface ICheckpointStore
{
    /// <summary>Keeps a verified checkpoint; how many this chain now has.</summary>
    /// <exception cref="IOException">It could not be kept (the sidecar sends it again).</exception>
    ValueTask<int> AddAsync(Checkpoint checkpoint, CancellationToken cancellation);

    /// <summary>A workload's checkpoints, every chain, in the order they arrived.</summary>
    /// <exception cref="IOException">They could not be read.</exception>
    ValueTask<IReadOnlyList<Checkpoint>> ListAsync(string workload, CancellationToken cancellation);
}

/// <summary>
/// Standalone: one JSON-lines file per workload in
/// <c>checkpoints/</c> of the data directory, appended to; the same lines <c>ztmctl audit checkpoints</c> prints.
/// </summary>
internal sealed class FileCheckpointStore(string dataDir) : ICheckpointStore
{
    private readonly string _directory = Path.Combine(dataDir, "checkpoints");
    private readonly Lock _lock = new();

    /// <summary>Checkpoints per (workload, chain), counted from the file once per workload: not re-read at every add.</summary>
    private readonly Dictionary<string, Dictionary<string, int>> _counts = new(StringComparer.Ordinal);

    // A local file append of one line: done synchronously, under the lock that keeps the counts and the file in step.
    public ValueTask<int> AddAsync(Checkpoint checkpoint, CancellationToken cancellation)
    {
        lock (_lock)
        {
            if (!_counts.TryGetValue(checkpoint.Workload, out var chains))
            {
                _counts[checkpoint.Workload] = chains = Read(checkpoint.Workload).GroupBy(c => c.Chain).ToDictionary(g => g.Key, g => g.Count());
            }
            Directory.CreateDirectory(_directory);
            File.AppendAllText(PathOf(checkpoint.Workload), checkpoint.ToJson() + "\n");
            return ValueTask.FromResult(chains[checkpoint.Chain] = chains.GetValueOrDefault(checkpoint.Chain) + 1);
        }
    }

    public ValueTask<IReadOnlyList<Checkpoint>> ListAsync(string workload, CancellationToken cancellation)
    {
        lock (_lock)
        {
            return ValueTask.FromResult<IReadOnlyList<Checkpoint>>(Read(workload));
        }
    }

    /// <summary>Under the lock.</summary>
    private List<Checkpoint> Read(string workload)
    {
        var path = PathOf(workload);
        return File.Exists(path) ? [.. Checkpoint.ReadLines(File.ReadLines(path)).Where(c => c.Workload == workload)] : [];
    }

    /// <summary>The workload's file: its SPIFFE ID with every character but letters, digits, '.' and '-' as '_'.</summary>
    private string PathOf(string workload) =>
        Path.Combine(_directory, string.Concat(workload.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' ? c : '_')) + ".jsonl");
}

/// <summary>
/// Kubernetes: every replica keeps the checkpoints it receives in one ConfigMap per workload in the control plane's
/// namespace, <c>ztm-checkpoints-&lt;workload&gt;</c> (label <c>ztm.dev/checkpoints=decision-log</c>), so any replica
/// lists them all and a restart loses none:
/// 1. the history is gzipped JSON lines (binaryData <c>checkpoints.jsonl.gz</c>, the lines <c>ztmctl audit
///    checkpoints</c> prints), with the workload, the count and the dropped count in data for <c>kubectl</c>;
/// 2. bounded: at most <see cref="MaxCheckpoints"/> and what fits <see cref="ConfigMaps.MaxPayloadBytes"/>; the oldest
///    go first and are counted (<c>dropped</c>). <c>ztmctl audit verify</c> then proves the records from the oldest kept
///    checkpoint on;
/// 3. written over the resourceVersion it read: when another replica wrote first (409), it reads again after a short
///    random pause and appends to that, so two replicas receiving checkpoints of one workload lose neither; after
///    <see cref="MaxAttempts"/> collisions the call fails UNAVAILABLE and the sidecar sends the checkpoint again.
/// </summary>
internal sealed class ConfigMapCheckpointStore(IKubernetes client, string @namespace, int maxCheckpoints = ConfigMapCheckpointStore.MaxCheckpoints) : ICheckpointStore
{
    public const string NamePrefix = "ztm-checkpoints-";
    public const string Label = "ztm.dev/checkpoints";
    public const string LabelValue = "decision-log";
    public const string CheckpointsKey = "checkpoints.jsonl.gz";
    public const int MaxCheckpoints = 2_000;
    private const int MaxAttempts = 16;

    public static string NameOf(string workload) => ConfigMaps.NameFor(NamePrefix, workload);

    public async ValueTask<int> AddAsync(Checkpoint checkpoint, CancellationToken cancellation)
    {
        var name = NameOf(checkpoint.Workload);
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            var map = await ReadAsync(name, cancellation);
            var kept = map is null ? [] : Parse(map, checkpoint.Workload);
            kept.Add(checkpoint);
            var dropped = (map?.Data?.TryGetValue("dropped", out var d) == true && long.TryParse(d, CultureInfo.InvariantCulture, out var n) ? n : 0)
                + Math.Max(0, kept.Count - maxCheckpoints);
            if (kept.Count > maxCheckpoints)
            {
                kept.RemoveRange(0, kept.Count - maxCheckpoints);
            }
            var zipped = Zip(kept);
            while (zipped.Length > ConfigMaps.MaxPayloadBytes && kept.Count > 1)
            {
                var drop = Math.Max(1, kept.Count / 10);
                kept.RemoveRange(0, drop);
                dropped += drop;
                zipped = Zip(kept);
            }
            var next = new V1ConfigMap
            {
                ApiVersion = "v1",
                Kind = "ConfigMap",
                Metadata = new V1ObjectMeta
                {
                    Name = name,
                    NamespaceProperty = @namespace,
                    ResourceVersion = map?.Metadata?.ResourceVersion,
                    Labels = new Dictionary<string, string> { [SecretCaStore.ManagedByLabel] = SecretCaStore.ManagedBy, [Label] = LabelValue },
                },
                Data = new Dictionary<string, string>
                {
                    ["workload"] = checkpoint.Workload,
                    ["checkpoints"] = kept.Count.ToString(CultureInfo.InvariantCulture),
                    ["dropped"] = dropped.ToString(CultureInfo.InvariantCulture),
                },
                BinaryData = new Dictionary<string, byte[]> { [CheckpointsKey] = zipped },
            };
            V1ConfigMap? written;
            try
            {
                written = await ConfigMaps.TryWriteAsync(client, next, cancellation);
            }
            catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
            {
                throw new IOException($"cannot write ConfigMap {@namespace}/{name}: {ConfigMaps.Describe(e)}", e);
            }
            if (written is not null)
            {
                return kept.Count(c => c.Chain == checkpoint.Chain);
            }
            // Another replica wrote first. A short random pause, growing with each attempt, so that replicas receiving
            // one workload's checkpoints at once do not keep colliding.
            await Task.Delay(Random.Shared.Next(1, 10 * attempt), cancellation);
        }
        throw new IOException($"ConfigMap {@namespace}/{name} kept changing under {MaxAttempts} attempts to write it; try again");
    }

    public async ValueTask<IReadOnlyList<Checkpoint>> ListAsync(string workload, CancellationToken cancellation) =>
        await ReadAsync(NameOf(workload), cancellation) is { } map ? Parse(map, workload) : [];

    private async Task<V1ConfigMap?> ReadAsync(string name, CancellationToken cancellation)
    {
        try
        {
            return await ConfigMaps.ReadAsync(client, @namespace, name, cancellation);
        }
        catch (Exception e) when (ConfigMaps.IsApiFailure(e, cancellation))
        {
            throw new IOException($"cannot read ConfigMap {@namespace}/{name}: {ConfigMaps.Describe(e)}", e);
        }
    }

    /// <summary>The workload's kept checkpoints (another workload's, should two names share a digest, are not its).</summary>
    private List<Checkpoint> Parse(V1ConfigMap map, string workload)
    {
        if (map.BinaryData?.TryGetValue(CheckpointsKey, out var zipped) != true || zipped is null)
        {
            return [];
        }
        try
        {
            using var reader = new StreamReader(new GZipStream(new MemoryStream(zipped), CompressionMode.Decompress), Encoding.UTF8);
            var lines = new List<string>();
            while (reader.ReadLine() is { } line)
            {
                lines.Add(line);
            }
            return [.. Checkpoint.ReadLines(lines).Where(c => c.Workload == workload)];
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or System.Text.Json.JsonException)
        {
            throw new IOException($"ConfigMap {@namespace}/{map.Metadata.Name} key {CheckpointsKey} is not checkpoints: {e.Message}", e);
        }
    }

    private static byte[] Zip(List<Checkpoint> checkpoints)
    {
        using var zipped = new MemoryStream();
        using (var writer = new StreamWriter(new GZipStream(zipped, CompressionLevel.Optimal), new UTF8Encoding(false)))
        {
            foreach (var checkpoint in checkpoints)
            {
                writer.Write(checkpoint.ToJson());
                writer.Write('\n');
            }
        }
        return zipped.ToArray();
    }
}
