using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.ControlPlane.Discovery;

namespace ZeroTrustMesh.Benchmarks.Discovery;

/// <summary>
/// <c>discovery-accuracy</c> (issue 19): how well path templating and the shadow-API diff do on a real API description.
/// GitHub's REST API descriptions (npm <c>@octokit/openapi</c>): traffic is generated from every operation of
/// <c>api.github.com.json</c> with realistic values per path parameter (integers, UUID-free ids, 40-hex SHAs, slugs,
/// usernames, the spec's own enums), fed to <see cref="PathInventory"/> in random order, and the templates it finds are
/// scored against the spec's (template F1, over-merging). Then <c>ghes-*.json</c> (GitHub Enterprise Server) is declared
/// and the same traffic diffed against it (<see cref="ApiDiff"/>): every dotcom operation GHES does not have is a shadow
/// API, and must be found (recall) without flagging others (precision).
/// </summary>
internal static class TemplateAccuracy
{
    private static readonly string[] Methods = ["get", "put", "post", "delete", "patch", "head", "options"];

    private static readonly string[] Words =
    [
        "alpha", "beta", "cloud", "data", "delta", "docs", "engine", "fast", "green", "hello", "infra", "kit", "lab", "lambda",
        "light", "core", "mesh", "node", "ocean", "pixel", "quick", "river", "rocket", "sample", "server", "shop", "sky", "stack",
        "star", "stream", "swift", "tiny", "tools", "web", "world", "zero", "api", "app", "auth", "blog", "bot", "cli", "demo",
        "dotfiles", "edge", "flow", "game", "graph", "hub", "io", "js", "lib", "linux", "map", "mobile", "net", "notes", "plugin",
        "portal", "project", "py", "rust", "scripts", "site", "sync", "test", "theme", "ui", "utils", "vault", "vision", "widget",
    ];

    private static readonly string[] Extensions = ["md", "json", "yml", "txt", "cs", "go", "py", "ts"];

    private static readonly string[] Syllables = ["ka", "lo", "mi", "ne", "ra", "to", "vi", "zu", "be", "do", "fa", "gi", "ho", "ju", "pe", "su", "ta", "wo", "xi", "ye"];

    public static RootCommand Command()
    {
        var openApi = new Option<string>("--openapi") { Description = "Directory holding api.github.com.json and ghes-*.json (npm pack @octokit/openapi; benchmarks/run fetches it)", Required = true };
        var perEndpoint = new Option<string>("--requests-per-endpoint") { Description = "Requests generated per operation, comma list: one round each", DefaultValueFactory = _ => "5,10,20" };
        var seeds = new Option<string>("--seeds", "--seed") { Description = "Random seeds, comma list: every round runs with each, and the report gives the worst seed's figures too", DefaultValueFactory = _ => "1,2,3,4,20261206" };
        var output = new Option<string?>("--output") { Description = "Write the markdown report here too" };
        var examples = new Option<int>("--examples") { Description = "How many over-merged, split and missed templates to print (stderr) per kind", DefaultValueFactory = _ => 8 };
        var command = new RootCommand("discovery-accuracy: path templating and shadow-API detection on GitHub's REST API descriptions") { openApi, perEndpoint, seeds, output, examples };
        command.SetAction(async (result, cancellation) =>
        {
            var dir = result.GetValue(openApi)!;
            var dotcomFile = Path.Combine(dir, "api.github.com.json");
            var ghesFile = Directory.Exists(dir) ? Directory.GetFiles(dir, "ghes-*.json").Where(f => !f.Contains(".deref.", StringComparison.Ordinal)).Order(StringComparer.Ordinal).LastOrDefault() : null;
            if (!File.Exists(dotcomFile) || ghesFile is null)
            {
                Console.Error.WriteLine($"discovery-accuracy: {dir} must hold api.github.com.json and a ghes-*.json (npm pack @octokit/openapi)");
                return 1;
            }
            var rounds = new List<int>();
            foreach (var part in (result.GetValue(perEndpoint) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < 1)
                {
                    Console.Error.WriteLine($"discovery-accuracy: --requests-per-endpoint takes positive integers, not '{part}'");
                    return CommandLineOptions.UsageError;
                }
                rounds.Add(n);
            }
            var seedList = new List<int>();
            foreach (var part in (result.GetValue(seeds) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                if (!int.TryParse(part, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
                {
                    Console.Error.WriteLine($"discovery-accuracy: --seeds takes integers, not '{part}'");
                    return CommandLineOptions.UsageError;
                }
                if (!seedList.Contains(n))
                {
                    seedList.Add(n);
                }
            }
            if (rounds.Count == 0 || seedList.Count == 0)
            {
                Console.Error.WriteLine("discovery-accuracy: --requests-per-endpoint and --seeds need at least one value each");
                return CommandLineOptions.UsageError;
            }
            var dotcom = Spec.Load(dotcomFile);
            var ghes = Spec.Load(ghesFile);
            var report = new StringBuilder();
            report.AppendLine(CultureInfo.InvariantCulture, $"# discovery-accuracy {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC");
            report.AppendLine();
            report.AppendLine(CultureInfo.InvariantCulture, $"Traffic from `{Path.GetFileName(dotcomFile)}` ({dotcom.Operations.Count} operations, {dotcom.Operations.Select(o => o.Template).Distinct().Count()} path templates); declared: `{Path.GetFileName(ghesFile)}` ({ghes.Operations.Count} operations). Seeds {string.Join(", ", seedList)}.");
            report.AppendLine();
            report.AppendLine("| seed | requests per operation | templates found | true | template precision | recall | F1 | over-merged | under-merged (split) | shadow operations (truth) | shadow recall | shadow precision | requests dropped (trie full) | ms |");
            report.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            var scores = new List<(int Seed, int PerOperation, Accuracy Score)>();
            foreach (var s in seedList)
            {
                foreach (var n in rounds)
                {
                    var score = Score(dotcom, ghes, n, s, result.GetValue(examples));
                    scores.Add((s, n, score));
                    report.AppendLine(CultureInfo.InvariantCulture,
                        $"| {s} | {n} | {score.Found} | {score.True} | {score.Precision:P2} | {score.Recall:P2} | {score.F1:0.0000} | {score.OverMerged} ({score.OverMergedShare:P2}) | {score.Split} | {score.ShadowTruth} | {score.ShadowRecall:P2} | {score.ShadowPrecision:P2} | {score.Dropped} | {score.Milliseconds:0} |");
                    foreach (var line in score.Examples)
                    {
                        Console.Error.WriteLine($"discovery-accuracy: seed={s} n={n} {line}");
                    }
                }
            }
            // The targets must hold on every seed, not on a lucky one: per round, each figure at its worst and the seed it came from.
            report.AppendLine();
            report.AppendLine(CultureInfo.InvariantCulture, $"Worst over {seedList.Count} seed(s) (the seed in brackets):");
            report.AppendLine();
            report.AppendLine("| requests per operation | lowest F1 | most over-merged | lowest shadow recall | lowest shadow precision |");
            report.AppendLine("|---:|---:|---:|---:|---:|");
            foreach (var n in rounds)
            {
                var round = scores.Where(x => x.PerOperation == n).ToList();
                var f1 = round.MinBy(x => x.Score.F1);
                var merged = round.MaxBy(x => x.Score.OverMergedShare);
                var recall = round.MinBy(x => x.Score.ShadowRecall);
                var precision = round.MinBy(x => x.Score.ShadowPrecision);
                report.AppendLine(CultureInfo.InvariantCulture,
                    $"| {n} | {f1.Score.F1:0.0000} ({f1.Seed}) | {merged.Score.OverMerged} ({merged.Score.OverMergedShare:P2}) ({merged.Seed}) | {recall.Score.ShadowRecall:P2} ({recall.Seed}) | {precision.Score.ShadowPrecision:P2} ({precision.Seed}) |");
            }
            var markdown = report.ToString();
            Console.Out.Write(markdown);
            if (result.GetValue(output) is { } file)
            {
                await File.WriteAllTextAsync(file, markdown, cancellation);
            }
            return 0;
        });
        return command;
    }

    internal sealed record Accuracy(int Found, int True, double Precision, double Recall, double F1, int OverMerged, double OverMergedShare, int Split,
        int ShadowTruth, double ShadowRecall, double ShadowPrecision, long Dropped, double Milliseconds, IReadOnlyList<string> Examples);

    internal static Accuracy Score(Spec traffic, Spec declared, int perOperation, int seed, int shown = 8)
    {
        var random = new Random(seed);
        var requests = new List<(string Method, string Path, string Truth)>();
        foreach (var operation in traffic.Operations)
        {
            for (var i = 0; i < perOperation; i++)
            {
                requests.Add((operation.Method, operation.Concrete(random), operation.Normalized));
            }
        }
        random.Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(requests));

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var inventory = new PathInventory(new PathInventoryOptions());
        foreach (var (method, path, _) in requests)
        {
            inventory.Observe(method, path);
        }
        var found = inventory.Operations();
        var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;

        var truth = traffic.Operations.Select(o => (o.Method, o.Normalized)).ToHashSet();
        var produced = found.Select(o => (o.Method, o.Template)).ToHashSet();
        var correct = produced.Count(truth.Contains);
        var precision = (double)correct / produced.Count;
        var recall = (double)correct / truth.Count;

        // Where each request landed: a found template fed by two true ones is over-merged; a true one spread over two found ones is split.
        var byMethod = found.GroupBy(o => o.Method).ToDictionary(g => g.Key, g => (IReadOnlyList<ObservedOperation>)[.. g]);
        var sources = new Dictionary<(string, string), HashSet<string>>();
        var landings = new Dictionary<(string, string), HashSet<string>>();
        foreach (var (method, path, truthTemplate) in requests)
        {
            var landed = PathInventory.TemplateOf(path, byMethod[method]) ?? "(none)";
            (sources.TryGetValue((method, landed), out var s) ? s : sources[(method, landed)] = []).Add(truthTemplate);
            (landings.TryGetValue((method, truthTemplate), out var l) ? l : landings[(method, truthTemplate)] = []).Add(landed);
        }
        var overMerged = sources.Where(kv => kv.Value.Count > 1).ToList();
        var split = landings.Count(kv => kv.Value.Count > 1);
        var examples = overMerged.Take(shown).Select(kv => $"over-merged {kv.Key.Item1} {kv.Key.Item2} ← {string.Join(", ", kv.Value)}")
            .Concat(landings.Where(kv => kv.Value.Count > 1).Take(shown).Select(kv => $"split {kv.Key.Item1} {kv.Key.Item2} → {string.Join(", ", kv.Value.Take(4))}{(kv.Value.Count > 4 ? $" (+{kv.Value.Count - 4})" : "")}"))
            .Concat(truth.Where(t => !produced.Contains(t)).Take(shown).Select(t => $"missed {t.Method} {t.Normalized}")).ToList();

        // Shadow APIs: dotcom operations that GHES does not declare.
        var declaredOperations = declared.Operations.Select(o => new DeclaredOperation(o.Method, o.Normalized)).ToList();
        bool IsDeclared(string method, string template) => declaredOperations.Any(d => d.Method == method && ApiDiff.Covers(d.Template, template));
        var trueShadow = traffic.Operations.Where(o => !IsDeclared(o.Method, o.Normalized)).Select(o => (o.Method, o.Normalized)).ToHashSet();
        var flagged = ApiDiff.Compare(declaredOperations, found).Where(f => f.Kind == ApiFindingKind.Shadow).Select(f => (f.Method, f.Template)).ToHashSet();
        // A true shadow operation is found when every template its requests landed in is flagged; a flagged template is right when only shadow operations fed it.
        var shadowFound = trueShadow.Count(t => landings[t].All(landed => flagged.Contains((t.Method, landed))));
        examples.AddRange(trueShadow.Where(t => !landings[t].All(landed => flagged.Contains((t.Method, landed)))).Take(shown)
            .Select(t => $"shadow not found {t.Method} {t.Normalized} → {string.Join(", ", landings[t])}"));
        var flaggedRight = flagged.Count(f => sources.TryGetValue(f, out var fed) && fed.All(source => trueShadow.Contains((f.Method, source))));
        return new Accuracy(produced.Count, truth.Count, precision, recall, 2 * precision * recall / (precision + recall), overMerged.Count,
            (double)overMerged.Count / produced.Count, split, trueShadow.Count, trueShadow.Count == 0 ? 1 : (double)shadowFound / trueShadow.Count,
            flagged.Count == 0 ? 1 : (double)flaggedRight / flagged.Count, inventory.Dropped, elapsed, examples);
    }

    /// <summary>The operations of an OpenAPI description, each able to make a concrete path with realistic values.</summary>
    internal sealed record Spec(IReadOnlyList<SpecOperation> Operations)
    {
        public static Spec Load(string file)
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(file));
            var root = document.RootElement;
            var operations = new List<SpecOperation>();
            foreach (var path in root.GetProperty("paths").EnumerateObject())
            {
                var shared = path.Value.TryGetProperty("parameters", out var p) ? Parameters(root, p) : [];
                foreach (var method in path.Value.EnumerateObject().Where(m => Methods.Contains(m.Name)))
                {
                    var own = method.Value.TryGetProperty("parameters", out var o) ? Parameters(root, o) : [];
                    var all = own.Concat(shared.Where(s => own.All(x => x.Name != s.Name))).ToDictionary(x => x.Name);
                    operations.Add(new SpecOperation(method.Name.ToUpperInvariant(), path.Name, all));
                }
            }
            return new Spec(operations);
        }

        private static List<PathParameter> Parameters(JsonElement root, JsonElement list)
        {
            var result = new List<PathParameter>();
            foreach (var item in list.EnumerateArray())
            {
                var parameter = item;
                if (item.TryGetProperty("$ref", out var reference))
                {
                    parameter = root.GetProperty("components").GetProperty("parameters").GetProperty(reference.GetString()!.Split('/')[^1]);
                }
                if (parameter.GetProperty("in").GetString() != "path")
                {
                    continue;
                }
                var schema = parameter.TryGetProperty("schema", out var s) ? s : default;
                var type = schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("type", out var t) ? t.GetString() : null;
                string[]? values = schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("enum", out var e) ? [.. e.EnumerateArray().Select(v => v.ToString())] : null;
                result.Add(new PathParameter(parameter.GetProperty("name").GetString()!, type, values));
            }
            return result;
        }
    }

    internal sealed record PathParameter(string Name, string? Type, string[]? Enum);

    internal sealed record SpecOperation(string Method, string Template, IReadOnlyDictionary<string, PathParameter> Parameters)
    {
        public string Normalized { get; } = "/" + string.Join('/', PathInventory.Segments(Template));

        public string Concrete(Random random)
        {
            var segments = Template.Split('/', StringSplitOptions.RemoveEmptyEntries);
            for (var i = 0; i < segments.Length; i++)
            {
                if (segments[i].StartsWith('{'))
                {
                    var name = segments[i][1..^1];
                    segments[i] = Value(Parameters.GetValueOrDefault(name) ?? new PathParameter(name, "string", null), random);
                }
            }
            return "/" + string.Join('/', segments);
        }
    }

    /// <summary>A realistic value for a path parameter, by its schema and name, as GitHub's own would look.</summary>
    private static string Value(PathParameter parameter, Random random)
    {
        var name = parameter.Name.ToLowerInvariant();
        if (parameter.Enum is { Length: > 0 } values)
        {
            return values[random.Next(values.Length)];
        }
        if (parameter.Type == "integer")
        {
            return random.Next(1, 100_000_000).ToString(CultureInfo.InvariantCulture);
        }
        if (name.Contains("sha", StringComparison.Ordinal))
        {
            return Hex(random, 40);
        }
        return name switch
        {
            "subject_digest" => "sha256:" + Hex(random, 64),
            "ghsa_id" => $"GHSA-{Token(random, 4)}-{Token(random, 4)}-{Token(random, 4)}",
            "gist_id" => Hex(random, 32),
            "client_id" => "Iv1." + Hex(random, 16),
            "basehead" => $"{Slug(random)}...{Slug(random)}",
            "secret_name" => string.Join('_', Enumerable.Range(0, random.Next(1, 3)).Select(_ => Words[random.Next(Words.Length)].ToUpperInvariant())) + "_TOKEN",
            "owner" or "username" or "org" or "enterprise" or "assignee" or "account" or "actor_identifier" or "user" or "enterprise-team" => User(random),
            "path" => $"{Slug(random)}.{Extensions[random.Next(Extensions.Length)]}",
            _ when name.EndsWith("_id", StringComparison.Ordinal) || name.EndsWith("_number", StringComparison.Ordinal) => random.Next(1, 100_000_000).ToString(CultureInfo.InvariantCulture),
            _ => Slug(random),
        };
    }

    private static string Hex(Random random, int length) => string.Create(length, random, static (span, r) =>
    {
        for (var i = 0; i < span.Length; i++)
        {
            span[i] = "0123456789abcdef"[r.Next(16)];
        }
    });

    private static string Token(Random random, int length) => string.Create(length, random, static (span, r) =>
    {
        for (var i = 0; i < span.Length; i++)
        {
            span[i] = "23456789cfghjmpqrvwx"[r.Next(20)];
        }
    });

    /// <summary>A repository, team or branch name: one to three words with hyphens, sometimes a number.</summary>
    private static string Slug(Random random)
    {
        var slug = string.Join('-', Enumerable.Range(0, random.Next(1, 4)).Select(_ => Words[random.Next(Words.Length)]));
        return random.Next(5) == 0 ? $"{slug}-{random.Next(2, 30)}" : slug;
    }

    /// <summary>A login: a made-up name of two to four syllables, sometimes with a word or digits after it.</summary>
    private static string User(Random random)
    {
        var name = string.Concat(Enumerable.Range(0, random.Next(2, 5)).Select(_ => Syllables[random.Next(Syllables.Length)]));
        return random.Next(4) switch
        {
            0 => name + random.Next(1, 999).ToString(CultureInfo.InvariantCulture),
            1 => $"{name}-{Words[random.Next(Words.Length)]}",
            _ => name,
        };
    }
}
