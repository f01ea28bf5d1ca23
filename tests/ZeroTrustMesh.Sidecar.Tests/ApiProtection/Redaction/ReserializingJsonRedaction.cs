using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

/// <summary>
/// The redaction as it was before it copied the input's bytes (kept as the reference of the differential test, and as
/// the baseline of RedactionBenchmarks): every kept token re-written through <see cref="Utf8JsonWriter"/>, no whitespace.
/// </summary>
internal sealed class ReserializingJsonRedaction : IDisposable
{
    /// <summary>Deeper than any API response; deeper bodies are treated as invalid JSON.</summary>
    public const int MaxDepth = 4096;

    private static readonly JsonReaderOptions ReaderOptions = new() { MaxDepth = MaxDepth };

    /// <summary>The writer only frames what the reader validated; relaxed escaping leaves member names as readable as they came.</summary>
    private static readonly JsonWriterOptions WriterOptions = new()
    {
        MaxDepth = MaxDepth,
        SkipValidation = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static ReadOnlySpan<byte> Masked => "\"****\""u8;

    private static ReadOnlySpan<byte> ByteOrderMark => [0xEF, 0xBB, 0xBF];

    private readonly ResponseRedactor _redactor;
    private readonly PooledBufferWriter _output = new();
    private readonly Utf8JsonWriter _writer;
    private JsonReaderState _readerState = new(ReaderOptions);
    private byte[] _pending = [];
    private int _pendingLength;
    private Frame[] _frames = new Frame[16];
    private int _depth;
    private Verdict _member;
    private int _skipping = -1;
    private long _received;

    public ReserializingJsonRedaction(ResponseRedactor redactor)
    {
        _redactor = redactor;
        _writer = new Utf8JsonWriter(_output, WriterOptions);
    }

    /// <summary>Values removed or masked so far.</summary>
    public int Redacted { get; private set; }

    /// <summary>The body was not valid JSON (or nested deeper than <see cref="MaxDepth"/>): it ended where it went wrong.</summary>
    public bool Invalid => InvalidReason is not null;

    /// <summary>Why the body was found invalid (the reader's message, with the line and byte), for a log line; null while valid.</summary>
    public string? InvalidReason { get; private set; }

    /// <summary>The redacted JSON not yet taken (<see cref="TakeOutput"/>).</summary>
    public ReadOnlyMemory<byte> Output => _output.Written;

    /// <summary>Marks <see cref="Output"/> as sent.</summary>
    public void TakeOutput() => _output.Clear();

    public void Write(ReadOnlySpan<byte> data) => Read(data, final: false);

    /// <summary>The body has ended: the last token is read, or the body is found truncated (<see cref="Invalid"/>).</summary>
    public void Complete()
    {
        // An empty body (a HEAD answer, a 204 labelled JSON) has nothing to redact and is not an error.
        if (_received > 0)
        {
            Read([], final: true);
        }
    }

    public void Dispose()
    {
        _writer.Dispose();
        _output.Dispose();
        if (_pending.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_pending);
            _pending = [];
        }
    }

    private void Read(ReadOnlySpan<byte> data, bool final)
    {
        if (Invalid)
        {
            return;
        }
        if (_received == 0 && data.StartsWith(ByteOrderMark))
        {
            data = data[ByteOrderMark.Length..];
        }
        _received += data.Length;
        Append(data);
        var input = _pending.AsSpan(0, _pendingLength);
        var reader = new Utf8JsonReader(input, final, _readerState);
        try
        {
            while (reader.Read())
            {
                Token(ref reader, input);
            }
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            // The reader refuses invalid JSON and nesting over MaxDepth; the writer a member name that is not UTF-8.
            InvalidReason = e.Message;
        }
        _writer.Flush();
        if (Invalid)
        {
            _pendingLength = 0;
            return;
        }
        _readerState = reader.CurrentState;
        var consumed = (int)reader.BytesConsumed;
        input[consumed..].CopyTo(_pending);
        _pendingLength -= consumed;
    }

    /// <summary>Adds <paramref name="data"/> after the bytes still unread (a token cut by the end of the last write).</summary>
    private void Append(ReadOnlySpan<byte> data)
    {
        if (_pendingLength + data.Length > _pending.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_pendingLength + data.Length, 4096));
            _pending.AsSpan(0, _pendingLength).CopyTo(larger);
            if (_pending.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(_pending);
            }
            _pending = larger;
        }
        data.CopyTo(_pending.AsSpan(_pendingLength));
        _pendingLength += data.Length;
    }

    private void Token(ref Utf8JsonReader reader, ReadOnlySpan<byte> input)
    {
        var token = reader.TokenType;
        if (_skipping >= 0)
        {
            // Inside a removed or masked object or array: nothing is written until it ends.
            if (token is JsonTokenType.EndObject or JsonTokenType.EndArray && reader.CurrentDepth == _skipping)
            {
                _skipping = -1;
            }
            return;
        }
        switch (token)
        {
            case JsonTokenType.PropertyName:
                _member = MemberVerdict(ref reader, _frames[_depth - 1]);
                if (_member.Action != RedactionAction.Remove)
                {
                    WriteName(ref reader);
                }
                return;
            case JsonTokenType.EndObject:
                _writer.WriteEndObject();
                _depth--;
                return;
            case JsonTokenType.EndArray:
                _writer.WriteEndArray();
                _depth--;
                return;
        }
        var verdict = ValueVerdict();
        var container = token is JsonTokenType.StartObject or JsonTokenType.StartArray;
        switch (verdict.Action)
        {
            case RedactionAction.Remove:
                Redacted++;
                break;
            case RedactionAction.Mask:
                Redacted++;
                _writer.WriteRawValue(Masked, skipInputValidation: true);
                break;
            default:
                if (token == JsonTokenType.StartObject)
                {
                    _writer.WriteStartObject();
                    Push(new Frame(verdict.Rules, verdict.Schema, -1));
                }
                else if (token == JsonTokenType.StartArray)
                {
                    _writer.WriteStartArray();
                    Push(new Frame(verdict.Rules, verdict.Schema, 0));
                }
                else
                {
                    // Strings and numbers exactly as the app wrote them (escapes, digits, exponent).
                    var start = (int)reader.TokenStartIndex;
                    _writer.WriteRawValue(input[start..(int)reader.BytesConsumed], skipInputValidation: true);
                }
                return;
        }
        if (container)
        {
            _skipping = reader.CurrentDepth;
        }
    }

    /// <summary>What happens to the value about to be read: the body itself, a member (decided at its name), or an element.</summary>
    private Verdict ValueVerdict()
    {
        if (_depth == 0)
        {
            return new Verdict(null, _redactor.Rules, _redactor.Schema);
        }
        ref var frame = ref _frames[_depth - 1];
        if (frame.NextIndex < 0)
        {
            return _member;
        }
        if (frame.Rules is null && frame.Schema is null)
        {
            return default;
        }
        var index = frame.NextIndex++;
        return Decide(frame.Rules?.Element(index), frame.Schema?.Element(index) ?? MemberSchema.FreeForm);
    }

    private static Verdict MemberVerdict(ref Utf8JsonReader reader, in Frame frame)
    {
        var rules = frame.Rules;
        var schema = frame.Schema;
        if (rules is null && schema is null)
        {
            return default;
        }
        if (rules?.NeedsNames != true && schema?.FiltersMembers != true)
        {
            return Decide(rules?.Other, MemberSchema.FreeForm);
        }
        var length = reader.ValueSpan.Length; // unescaped UTF-16 is never longer than the UTF-8 (escaped or not)
        char[]? rented = null;
        Span<char> name = length <= 256 ? stackalloc char[256] : (rented = ArrayPool<char>.Shared.Rent(length));
        try
        {
            name = name[..reader.CopyString(name)];
            // The states are keyed by UTF-8 now; this side still reads the name as text first, then encodes it.
            var utf8 = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount(name.Length));
            try
            {
                var bytes = utf8.AsSpan(0, Encoding.UTF8.GetBytes(name, utf8));
                return Decide(rules?.Member(bytes), schema?.Member(bytes) ?? MemberSchema.FreeForm);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(utf8);
            }
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<char>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Removal wins (by rule, or as undeclared), then masking; otherwise the value is kept and looked into with the inner states.</summary>
    private static Verdict Decide(RuleState? rules, MemberSchema schema) =>
        schema.Removed ? new Verdict(RedactionAction.Remove, null, null)
        : rules?.Action is { } action ? new Verdict(action, null, null)
        : new Verdict(null, rules, schema.State);

    private void WriteName(ref Utf8JsonReader reader)
    {
        if (!reader.ValueIsEscaped)
        {
            _writer.WritePropertyName(reader.ValueSpan);
            return;
        }
        var length = reader.ValueSpan.Length;
        byte[]? rented = null;
        Span<byte> name = length <= 256 ? stackalloc byte[256] : (rented = ArrayPool<byte>.Shared.Rent(length));
        try
        {
            _writer.WritePropertyName(name[..reader.CopyString(name)]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private void Push(Frame frame)
    {
        if (_depth == _frames.Length)
        {
            Array.Resize(ref _frames, _frames.Length * 2);
        }
        _frames[_depth++] = frame;
    }

    /// <summary>What to do with one value: <see cref="Action"/>, or (null) keep it, with the states its members or elements are in.</summary>
    private readonly record struct Verdict(RedactionAction? Action, RuleState? Rules, SchemaState? Schema);

    /// <summary>An open object (<see cref="NextIndex"/> -1) or array (the index of its next element), with the states its members or elements start from.</summary>
    private record struct Frame(RuleState? Rules, SchemaState? Schema, int NextIndex);
}
