using ZeroTrustMesh.DecisionLog;

namespace ZeroTrustMesh.ControlPlane.Audit;

/// <summary>Where the control plane keeps the decision-log checkpoints sidecars sent (issue 19, section 4).</summary>
public interface ICheckpointStore
{
    /// <summary>Keeps a verified checkpoint; how many this chain now has.</summary>
    int Add(Checkpoint checkpoint);

    /// <summary>A workload's checkpoints, every chain, in the order they arrived.</summary>
    IReadOnlyList<Checkpoint> List(string workload);
}

/// <summary>
/// Standalone (and, for now, in Kubernetes too: see the README's "Decision log"): one JSON-lines file per workload in
/// <c>checkpoints/</c> of the data directory, appended to; the same lines <c>ztmctl audit checkpoints</c> prints.
/// </summary>
internal sealed class FileCheckpointStore(string dataDir) : ICheckpointStore
{
    private readonly string _directory = Path.Combine(dataDir, "checkpoints");
    private readonly Lock _lock = new();

    /// <summary>Checkpoints per (workload, chain), counted from the file once per workload: not re-read at every add.</summary>
    private readonly Dictionary<string, Dictionary<string, int>> _counts = new(StringComparer.Ordinal);

    public int Add(Checkpoint checkpoint)
    {
        lock (_lock)
        {
            if (!_counts.TryGetValue(checkpoint.Workload, out var chains))
            {
                _counts[checkpoint.Workload] = chains = List(checkpoint.Workload).GroupBy(c => c.Chain).ToDictionary(g => g.Key, g => g.Count());
            }
            Directory.CreateDirectory(_directory);
            File.AppendAllText(PathOf(checkpoint.Workload), checkpoint.ToJson() + "\n");
            return chains[checkpoint.Chain] = chains.GetValueOrDefault(checkpoint.Chain) + 1;
        }
    }

    public IReadOnlyList<Checkpoint> List(string workload)
    {
        lock (_lock)
        {
            var path = PathOf(workload);
            return File.Exists(path) ? [.. Checkpoint.ReadLines(File.ReadLines(path)).Where(c => c.Workload == workload)] : [];
        }
    }

    /// <summary>The workload's file: its SPIFFE ID with every character but letters, digits, '.' and '-' as '_'.</summary>
    private string PathOf(string workload) =>
        Path.Combine(_directory, string.Concat(workload.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' ? c : '_')) + ".jsonl");
}
