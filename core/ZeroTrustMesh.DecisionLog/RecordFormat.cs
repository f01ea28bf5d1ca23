using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace ZeroTrustMesh.DecisionLog;

/// <summary>
/// The line format, one JSON object per line, members in a fixed order, the hash always last:
/// <code>{"seq":7,"time":"…","kind":"decision",…,"prev":"&lt;hex&gt;","hash":"&lt;hex&gt;"}</code>
/// A record's canonical bytes are its line without the <c>,"hash":"…"</c> member (exactly
/// <see cref="HashSuffixLength"/> bytes before the closing brace); its hash is SHA-256 over the previous record's hash
/// (32 raw bytes; zeros before record 1) and those bytes. The hash covers the line byte for byte: any change to it,
/// whitespace included, is a different record.
/// </summary>
public static class RecordFormat
{
    public const int HashBytes = 32;

    /// <summary>The previous hash of record 1.</summary>
    public static readonly string Genesis = new('0', HashBytes * 2);

    private static readonly byte[] HashMember = ",\"hash\":\""u8.ToArray();

    /// <summary><c>,"hash":"</c>, 64 hex digits, <c>"}</c>.</summary>
    public const int HashSuffixLength = 9 + HashBytes * 2 + 2;

    /// <summary>Writes the canonical bytes of a record (through <c>"prev"</c>, closing brace included).</summary>
    internal static void WriteCanonical(Utf8JsonWriter json, long sequence, DateTimeOffset time, RecordKind kind, in Decision decision, long lost,
        string? chain, string? workload, string? segment, long truncated, ReadOnlySpan<byte> previous)
    {
        json.WriteStartObject();
        json.WriteNumber("seq"u8, sequence);
        json.WriteString("time"u8, time);
        switch (kind)
        {
            case RecordKind.Decision:
                json.WriteString("kind"u8, "decision"u8);
                json.WriteString("caller"u8, decision.Caller);
                json.WriteString("method"u8, decision.Method);
                json.WriteString("path"u8, decision.Path);
                json.WriteNumber("port"u8, decision.Port);
                json.WriteNumber("status"u8, decision.Status);
                json.WriteString("decision"u8, decision.Allowed ? "allowed"u8 : "denied"u8);
                if (decision.Policy is not null)
                {
                    json.WriteString("policy"u8, decision.Policy);
                    json.WriteNumber("rule"u8, decision.Rule);
                }
                if (decision.Reason is not null)
                {
                    json.WriteString("reason"u8, decision.Reason);
                }
                break;
            case RecordKind.Gap:
                json.WriteString("kind"u8, "gap"u8);
                json.WriteNumber("lost"u8, lost);
                break;
            default:
                json.WriteString("kind"u8, "open"u8);
                json.WriteString("chain"u8, chain);
                json.WriteString("workload"u8, workload);
                json.WriteString("segment"u8, segment);
                if (truncated > 0)
                {
                    json.WriteNumber("truncated"u8, truncated);
                }
                break;
        }
        Span<char> hex = stackalloc char[HashBytes * 2];
        Convert.TryToHexStringLower(previous, hex, out _);
        json.WriteString("prev"u8, hex);
        json.WriteEndObject();
    }

    /// <summary>SHA-256 over <paramref name="previous"/> and <paramref name="canonical"/>, into <paramref name="hash"/>.</summary>
    public static void Hash(IncrementalHash sha256, ReadOnlySpan<byte> previous, ReadOnlySpan<byte> canonical, Span<byte> hash)
    {
        sha256.AppendData(previous);
        sha256.AppendData(canonical);
        sha256.GetHashAndReset(hash);
    }

    /// <summary>The line: the canonical bytes with the hash member before the closing brace, and a newline.</summary>
    internal static void WriteLine(IBufferWriter<byte> output, ReadOnlySpan<byte> canonical, ReadOnlySpan<byte> hash)
    {
        var span = output.GetSpan(canonical.Length + HashSuffixLength);
        canonical[..^1].CopyTo(span);
        var at = canonical.Length - 1;
        HashMember.CopyTo(span[at..]);
        at += HashMember.Length;
        foreach (var b in hash)
        {
            span[at++] = HexDigits[b >> 4];
            span[at++] = HexDigits[b & 0xf];
        }
        span[at++] = (byte)'"';
        span[at++] = (byte)'}';
        span[at++] = (byte)'\n';
        output.Advance(at);
    }

    private static ReadOnlySpan<byte> HexDigits => "0123456789abcdef"u8;

    /// <summary>
    /// Splits a line (without its newline) into canonical bytes and the stored hash, and reads the members; null and a
    /// reason when the line is not a record of this format.
    /// </summary>
    public static ParsedRecord? Parse(ReadOnlySpan<byte> line, Span<byte> canonical, out int canonicalLength, out string? problem)
    {
        canonicalLength = 0;
        var suffixAt = line.Length - HashSuffixLength;
        if (suffixAt < 2 || !line[suffixAt..].StartsWith(HashMember) || !line.EndsWith("\"}"u8))
        {
            problem = "not a record: it does not end with the hash member";
            return null;
        }
        var hashHex = line.Slice(suffixAt + HashMember.Length, HashBytes * 2);
        if (!IsLowerHex(hashHex))
        {
            problem = "not a record: the hash is not 64 lower-case hex digits";
            return null;
        }
        line[..suffixAt].CopyTo(canonical);
        canonical[suffixAt] = (byte)'}';
        canonicalLength = suffixAt + 1;
        try
        {
            return Read(canonical[..canonicalLength], Encoding.ASCII.GetString(hashHex), out problem);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            // Not JSON, a member of the wrong type, or bytes that are not UTF-8.
            problem = $"not a record: {e.Message}";
            return null;
        }
    }

    private static ParsedRecord? Read(ReadOnlySpan<byte> canonical, string hash, out string? problem)
    {
        var reader = new Utf8JsonReader(canonical, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            problem = "not a record: not a JSON object";
            return null;
        }
        long? seq = null;
        long lost = 0;
        int status = 0, rule = -1;
        DateTimeOffset? time = null;
        string? kind = null, prev = null, chain = null, workload = null, caller = null, method = null, path = null, decision = null, policy = null, reason = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var name = reader.GetString();
            reader.Read();
            switch (name)
            {
                case "seq": seq = reader.GetInt64(); break;
                case "time": time = reader.GetDateTimeOffset(); break;
                case "kind": kind = reader.GetString(); break;
                case "prev": prev = reader.GetString(); break;
                case "chain": chain = reader.GetString(); break;
                case "workload": workload = reader.GetString(); break;
                case "lost": lost = reader.GetInt64(); break;
                case "caller": caller = reader.GetString(); break;
                case "method": method = reader.GetString(); break;
                case "path": path = reader.GetString(); break;
                case "status": status = reader.GetInt32(); break;
                case "decision": decision = reader.GetString(); break;
                case "policy": policy = reader.GetString(); break;
                case "rule": rule = reader.GetInt32(); break;
                case "reason": reason = reader.GetString(); break;
                default: reader.Skip(); break; // port, segment, truncated: covered by the hash, not needed to verify
            }
        }
        if (reader.TokenType != JsonTokenType.EndObject || reader.Read())
        {
            problem = "not a record: not one JSON object";
            return null;
        }
        RecordKind? recordKind = kind switch { "decision" => RecordKind.Decision, "gap" => RecordKind.Gap, "open" => RecordKind.Open, _ => null };
        if (seq is null || time is null || recordKind is null || prev is null || prev.Length != HashBytes * 2 || !IsLowerHex(Encoding.ASCII.GetBytes(prev)))
        {
            problem = "not a record: seq, time, kind (decision, gap or open) or prev is missing or malformed";
            return null;
        }
        if (recordKind == RecordKind.Open && (chain is null || workload is null))
        {
            problem = "not a record: an open record without chain or workload";
            return null;
        }
        problem = null;
        return new ParsedRecord(seq.Value, recordKind.Value, time.Value, prev, hash, chain, workload, lost, caller, method, path, status,
            decision == "allowed", policy, rule, reason);
    }

    private static bool IsLowerHex(ReadOnlySpan<byte> text)
    {
        foreach (var c in text)
        {
            if (c is not ((>= (byte)'0' and <= (byte)'9') or (>= (byte)'a' and <= (byte)'f')))
            {
                return false;
            }
        }
        return true;
    }
}
