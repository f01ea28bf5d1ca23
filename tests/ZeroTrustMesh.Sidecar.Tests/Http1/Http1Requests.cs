using System.Globalization;
using CsCheck;

namespace ZeroTrustMesh.Sidecar.Tests.Http1;

/// <summary>A generated HTTP/1.1 request, as Latin-1 text (so any byte can be written as a char).</summary>
internal sealed record Request(string Method, string Target, string Version, IReadOnlyList<string> Fields, string Framing, IReadOnlyList<string> Chunks,
    IReadOnlyList<string> Extensions, IReadOnlyList<string> Trailers, bool UpperHex)
{
    public string Data => string.Concat(Chunks);

    public string Line => $"{Method} {Target} {Version}";

    public IReadOnlyList<string> FramedFields => Framing switch
    {
        "length" => [.. Fields, $"Content-Length: {Data.Length}"],
        "chunked" => [.. Fields, "Transfer-Encoding: chunked"],
        _ => Fields,
    };

    public string Body => Framing switch
    {
        "length" => Data,
        "chunked" => ChunkedBody(Chunks.Select(c => Size(c.Length)).ToList(), Trailers),
        _ => "",
    };

    public string Size(int n) => n.ToString(UpperHex ? "X" : "x", CultureInfo.InvariantCulture);

    /// <summary>The chunked coding of <see cref="Chunks"/> with the given size texts, then the last chunk and trailers.</summary>
    public string ChunkedBody(IReadOnlyList<string> sizes, IReadOnlyList<string> trailers, string lastSize = "0", string dataEnd = "\r\n") =>
        string.Concat(Chunks.Select((c, i) => sizes[i] + Extensions[i % Extensions.Count] + "\r\n" + c + dataEnd))
        + lastSize + "\r\n" + string.Concat(trailers.Select(t => t + "\r\n")) + "\r\n";

    public string Render() => Render(Line, FramedFields, Body);

    public static string Render(string line, IEnumerable<string> fields, string body) => line + "\r\n" + string.Concat(fields.Select(f => f + "\r\n")) + "\r\n" + body;
}

internal static class Requests
{
    private const string PathChars = "abcxyzABZ0189-._~!$&'()*+,;=:@";
    private const string TokenChars = "abcdefxyzABCZ0189-_!#$%&'*+.^`|~";
    private const string ValueChars = "abc XYZ 0189 \t!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    private const string DataChars = "abc xyz\r\n019";

    private static readonly Gen<string> Segment =
        from escaped in Gen.Int[0, 3]
        from chars in Gen.Char[PathChars].Array[0, 8]
        from escape in Gen.OneOf("%20", "%2F", "%41", "%2e%2e", "..", "%C3%A9")
        select escaped == 0 ? escape : new string(chars);

    public static readonly Gen<Request> Generate =
        from method in Gen.OneOf("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND", "M-SEARCH", "X_CUSTOM")
        from segments in Segment.Array[0, 4]
        from query in Gen.OneOf("", "?a=1", "?q=x%20y&b=", "?", "?a=/b?c")
        from version in Gen.Frequency((9, "HTTP/1.1"), (1, "HTTP/1.0"))
        from host in Gen.OneOf("orders", "orders:8080", "127.0.0.1:5000", "[::1]:80", "a.b-c_d", "")
        from names in Gen.Char[TokenChars].Array[1, 10].Array[0, 4]
        from values in Gen.Char[ValueChars].Array[0, 20].Array[4]
        from framing in Gen.OneOf("none", "length", "chunked")
        from chunks in Gen.Char[DataChars].Array[1, 12].Array[0, 4]
        from extensions in Gen.OneOf("", ";a=b", ";x", ";q=\"v w\"").Array[1, 3]
        from trailers in Gen.OneOf("X-Trailer: t", "Y: 1 2", "Z:").Array[0, 2]
        from upperHex in Gen.Bool
        select new Request(method, "/" + string.Join('/', segments) + query, version,
            [$"Host: {host}", .. names.Select((n, i) => $"{new string(n)}: {new string(values[i])}")],
            framing, [.. chunks.Select(c => new string(c))], extensions, trailers, upperHex);
}

/// <summary>One mutation per refusal class: each turns a valid request into one Kestrel (usually) refuses.</summary>
internal static class Mutations
{
    public static readonly string[] Names =
    [
        "cl+te", "duplicate-cl", "invalid-cl", "obs-fold", "bare-lf", "method", "target", "field-name", "field-value", "too-large",
        "chunk-size", "chunk-ext", "chunk-suffix", "coding", "version", "host", "truncated", "leading-crlf", "trailer", "spacing",
    ];

    public static string Apply(string name, Request r, Random random)
    {
        T Pick<T>(params T[] items) => items[random.Next(items.Length)];
        string Insert(string s, string what) => s.Insert(random.Next(s.Length + 1), what);
        var chunked = r with { Framing = "chunked", Chunks = r.Chunks.Count > 0 ? r.Chunks : ["abc"], Version = "HTTP/1.1" };
        var withData = r with { Chunks = r.Chunks.Count > 0 ? r.Chunks : ["abc"] };
        List<string> fields = [.. r.FramedFields];
        switch (name)
        {
            case "cl+te":
            {
                List<string> f = [.. chunked.Fields, $"Content-Length: {chunked.Body.Length}"];
                f.Insert(random.Next(f.Count + 1), Pick("Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked", "transfer-encoding: identity"));
                return Request.Render(chunked.Line, f, Pick(chunked.Body, chunked.Data));
            }
            case "duplicate-cl":
            {
                var n = withData.Data.Length;
                List<string> f = [.. withData.Fields, $"Content-Length: {n}", $"Content-Length: {Pick(n, n + 1, 0)}"];
                return Request.Render(withData.Line, f, withData.Data);
            }
            case "invalid-cl":
                return Request.Render(withData.Line, [.. withData.Fields, "Content-Length: " + Pick("abc", "-1", "+5", "1 2", "0x10", "", "1,1", "99999999999999999999", "3\u00a0", "\u00b3")], withData.Data);
            case "obs-fold":
            {
                var i = random.Next(fields.Count);
                fields.Insert(i + 1, Pick(" folded", "\tfolded", " ", "  x: y"));
                return Request.Render(r.Line, fields, r.Body);
            }
            case "bare-lf":
            {
                var text = r.Render();
                var head = text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4;
                var crs = Enumerable.Range(0, head).Where(i => text[i] == '\r').ToList();
                return text.Remove(crs[random.Next(crs.Count)], 1);
            }
            case "method":
                return Request.Render(Pick(Insert(r.Method, Pick("(", ")", "\u0001", "\u007f", "\u00e9", "/", "@", ":", "\"", "{")), "", " " + r.Method) + $" {r.Target} {r.Version}", fields, r.Body);
            case "target":
                return Request.Render($"{r.Method} {Pick(Insert(r.Target, Pick(" ", "\u0001", "\u007f", "\u0000", "%00", "\u00ff", "\u00c3\u00a9", "#", "\t", "%C3%28", "%FF")), "abc", "*", "", "//x")} {r.Version}", fields, r.Body);
            case "field-name":
            {
                var bad = Pick("X-A : v", "X(A): v", "X\u0001A: v", "X\u00e9A: v", ": v", "X-A v", "X/A: v", " X-A: v", "X-A\t: v", "X\"A: v");
                fields.Insert(random.Next(fields.Count + 1), bad);
                return Request.Render(r.Line, fields, r.Body);
            }
            case "field-value":
                fields.Insert(random.Next(fields.Count + 1), "X-V: " + Insert("a value", Pick("\u0000", "\r", "\u0001", "\u007f", "\u00ff", "\u00c3\u00a9", "\u001b", "\u0080", "\u00e2\u0082")));
                return Request.Render(r.Line, fields, r.Body);
            case "too-large":
                switch (random.Next(3))
                {
                    case 0:
                        // One field line making the header section the limit, give or take a few bytes.
                        var used = fields.Sum(f => f.Length + 2) + 2 + "X-Big: \r\n".Length;
                        fields.Add("X-Big: " + new string('b', 32 * 1024 - used + random.Next(-3, 4)));
                        return Request.Render(r.Line, fields, r.Body);
                    case 1:
                        var pad = 8 * 1024 - $"{r.Method}  {r.Version}\r\n".Length - r.Target.Length + random.Next(-3, 4);
                        return Request.Render($"{r.Method} {r.Target}{(r.Target.Contains('?', StringComparison.Ordinal) ? "&" : "?")}{new string('p', Math.Max(pad - 1, 0))} {r.Version}", fields, r.Body);
                    default:
                        var count = 100 - fields.Count + random.Next(-2, 3);
                        return Request.Render(r.Line, [.. fields, .. Enumerable.Range(0, Math.Max(count, 0)).Select(i => $"X-N{i}: {i}")], r.Body);
                }
            case "chunk-size":
            {
                var sizes = chunked.Chunks.Select(c => chunked.Size(c.Length)).ToList();
                var i = random.Next(sizes.Count);
                sizes[i] = Pick("g", " " + sizes[i], sizes[i] + " ", "-1", "", "0x" + sizes[i], "100000000", "ffffffffff", "+" + sizes[i], sizes[i] + "\t", "0000000000" + sizes[i], "000000" + sizes[i], "0000000" + sizes[i], "7fffffff", "80000000");
                return Request.Render(chunked.Line, chunked.FramedFields, chunked.ChunkedBody(sizes, chunked.Trailers));
            }
            case "chunk-ext":
            {
                var sizes = chunked.Chunks.Select(c => chunked.Size(c.Length) + Pick(";a\u0001b", ";a\nb", ";\u0000", ";\u007f", ";a\rb", ";\u00e9")).ToList();
                return Request.Render(chunked.Line, chunked.FramedFields, chunked.ChunkedBody(sizes, chunked.Trailers));
            }
            case "chunk-suffix":
            {
                var sizes = chunked.Chunks.Select(c => chunked.Size(Math.Max(c.Length - 1, 0))).ToList();
                return Request.Render(chunked.Line, chunked.FramedFields, random.Next(2) == 0
                    ? chunked.ChunkedBody(sizes, chunked.Trailers)
                    : chunked.ChunkedBody([.. chunked.Chunks.Select(c => chunked.Size(c.Length))], chunked.Trailers, dataEnd: Pick("", "\n", "\r", "x\r\n")));
            }
            case "coding":
                return Request.Render(chunked.Line, [.. chunked.Fields, "Transfer-Encoding: " + Pick("gzip", "chunked, gzip", "identity", "xchunked", "chunked, chunked", "CHUNKED", "chunked;q=1", "")], chunked.Body);
            case "version":
                return Request.Render($"{r.Method} {r.Target} {Pick("HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.1 ", "HTTP/1", "HTTP/1.10", "HTTPS/1.1", "HTTP/0.9", "HTTP/3.0", "")}", fields, r.Body);
            case "host":
            {
                var others = fields.Where(f => !f.StartsWith("Host:", StringComparison.Ordinal)).ToList();
                var line = r.Line.Replace("HTTP/1.0", "HTTP/1.1", StringComparison.Ordinal);
                return random.Next(3) switch
                {
                    0 => Request.Render(line, others, r.Body),
                    1 => Request.Render(line, [.. fields, Pick("Host: other", "host: orders")], r.Body),
                    _ => Request.Render(line, [$"Host: {Pick("a b", "a/b", "[::1", "host:80x", "ho\u0001st", "@evil", "a:b:c", "a?b", "[zz]", "ex\u00e9mple")}", .. others], r.Body),
                };
            }
            case "truncated":
                return random.Next(2) == 0
                    ? Request.Render(withData.Line, [.. withData.Fields, $"Content-Length: {withData.Data.Length + random.Next(1, 200)}"], withData.Data)
                    : Request.Render(chunked.Line, chunked.FramedFields, string.Concat(chunked.Chunks.Select(c => chunked.Size(c.Length) + "\r\n" + c + "\r\n")));
            case "leading-crlf":
                return Pick("\r\n", "\n", " ", "\r\n\r\n") + r.Render();
            case "trailer":
                return Request.Render(chunked.Line, chunked.FramedFields, chunked.ChunkedBody([.. chunked.Chunks.Select(c => chunked.Size(c.Length))],
                    [.. chunked.Trailers, Pick(" obs", "bad name: x", "x:\u0000", "x y", "x\u0001: 1", ":v")]));
            default: // spacing
                return Request.Render(Pick($"{r.Method}  {r.Target} {r.Version}", $"{r.Method} {r.Target}  {r.Version}", $"{r.Method}\t{r.Target} {r.Version}", $"{r.Method} {r.Target} {r.Version} ", $" {r.Line}"), fields, r.Body);
        }
    }
}
