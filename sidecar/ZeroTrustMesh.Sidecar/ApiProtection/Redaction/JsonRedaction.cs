using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

/// <summary>
/// One response body being redacted as it streams: bytes go in as they arrive (<see cref="Write"/>), the redacted JSON
/// collects in <see cref="Output"/> for the caller to send on, and <see cref="Complete"/> ends it.
/// 1. The bytes are read with <see cref="Utf8JsonReader"/> where they lie; a token cut by the end of a write waits (with
///    the reader's <see cref="JsonReaderState"/>) for the next one, so only that token is carried, never the body.
/// 2. Each member or element is decided once, when its name or first token is read: kept, masked (its value becomes
///    <c>"****"</c>) or removed. The output is the input's own bytes, copied in runs between the edits: kept JSON is
///    never re-serialized (escapes, digits and whitespace stay as the app wrote them). A removed member or element
///    takes one separating comma with it: the one before it, or, when nothing before it in its object or array was
///    kept, the one after it.
/// 3. What is kept per open object or array is one small frame (its rule and schema states, the next element's index,
///    whether anything in it was kept yet), so memory grows with the nesting depth, not with the size of the body. An
///    object or array no rule or schema reaches inside has no frame: its tokens are passed over (names checked only).
///    Member names are matched as the UTF-8 bytes they are read as, never decoded (<see cref="Utf8Names{T}"/>).
/// 4. Invalid JSON (or nesting over <see cref="MaxDepth"/>, or a member name that is not UTF-8) ends the body where it
///    went wrong: the tokens already read have been written, nothing after them is, and <see cref="Invalid"/> says so.
///    Nothing is passed on unchecked.
/// Whitespace after the body's last token is not kept.
/// </summary>
internal sealed class JsonRedaction : IDisposable
{
    /// <summary>Deeper than any API response; deeper bodies are treated as invalid JSON.</summary>
    public const int MaxDepth = 4096;

    /// <summary>
    /// How much of a write is read together with a carried token to finish it; the rest of the write is then read
    /// where it lies (not copied after the carried bytes, which for a 64 KiB write would need a 128 KiB array).
    /// </summary>
    private const int CarryStep = 4096;

    /// <summary>Whitespace at the end of a write is carried to the next one (so the output does not depend on where writes end), unless there is more than this.</summary>
    private const int MaxCarriedWhitespace = 1024;

    private static readonly JsonReaderOptions ReaderOptions = new() { MaxDepth = MaxDepth };

    private static ReadOnlySpan<byte> Masked => "\"****\""u8;

    private static ReadOnlySpan<byte> ByteOrderMark => [0xEF, 0xBB, 0xBF];

    private static ReadOnlySpan<byte> Whitespace => " \t\r\n"u8;

    private readonly ResponseRedactor _redactor;
    private readonly PooledBufferWriter _output = new();
    private JsonReaderState _readerState = new(ReaderOptions);
    private byte[] _pending = [];
    private int _pendingLength;
    private Frame[] _frames = ArrayPool<Frame>.Shared.Rent(16);
    private int _depth;
    private Verdict _member;
    private long _received;

    /// <summary>
    /// The depth of the object or array being passed over: one no rule or schema reaches inside (kept whole, its member
    /// names only checked to be UTF-8), or one removed or masked (left out); -1 when none is.
    /// </summary>
    private int _passing = -1;

    /// <summary>Whether the object or array being passed over is kept (otherwise it is left out).</summary>
    private bool _passingKept;

    /// <summary>The bytes being read are ASCII: a member name without escapes is UTF-8 without being checked.</summary>
    private bool _ascii;

    /// <summary>Where, in the bytes being read, the run to copy to the output starts; -1 while the bytes read are left out.</summary>
    private int _copyFrom;

    /// <summary>Where, in the bytes being read, the last token read ends.</summary>
    private int _lastEnd;

    public JsonRedaction(ResponseRedactor redactor) => _redactor = redactor;

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

    public void Write(ReadOnlySpan<byte> data)
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
        if (_pendingLength > 0)
        {
            // Finish the carried token with the first bytes of this write; read the rest where it lies.
            var carried = _pendingLength;
            var take = Math.Min(data.Length, CarryStep);
            Append(data[..take]);
            var kept = Read(_pending.AsSpan(0, _pendingLength), final: false);
            if (Invalid)
            {
                return;
            }
            if (kept < carried)
            {
                // A token longer than the step (a long string): it takes the whole write.
                Shift(kept);
                if (take < data.Length)
                {
                    Append(data[take..]);
                    Shift(Read(_pending.AsSpan(0, _pendingLength), final: false));
                }
                return;
            }
            data = data[(kept - carried)..];
            _pendingLength = 0;
        }
        var end = Read(data, final: false);
        if (!Invalid)
        {
            Append(data[end..]);
        }
    }

    /// <summary>The body has ended: the last token is read, or the body is found truncated (<see cref="Invalid"/>).</summary>
    public void Complete()
    {
        // An empty body (a HEAD answer, a 204 labelled JSON) has nothing to redact and is not an error.
        if (_received > 0 && !Invalid)
        {
            Read(_pending.AsSpan(0, _pendingLength), final: true);
            _pendingLength = 0;
        }
    }

    public void Dispose()
    {
        _output.Dispose();
        if (_pending.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_pending);
            _pending = [];
        }
        if (_frames.Length > 0)
        {
            ArrayPool<Frame>.Shared.Return(_frames, clearArray: true); // the frames hold states: let them go with the config
            _frames = [];
        }
    }

    /// <summary>Reads the tokens of <paramref name="input"/>, writes what is kept of them, and returns where the bytes to carry to the next read start.</summary>
    private int Read(ReadOnlySpan<byte> input, bool final)
    {
        var reader = new Utf8JsonReader(input, final, _readerState);
        _lastEnd = 0;
        if (_copyFrom > 0)
        {
            _copyFrom = 0;
        }
        _ascii = Ascii.IsValid(input);
        try
        {
            while (reader.Read())
            {
                if (_passing >= 0)
                {
                    PassOver(ref reader);
                }
                else
                {
                    Token(ref reader, input);
                }
                _lastEnd = (int)reader.BytesConsumed;
            }
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            // The reader refuses invalid JSON and nesting over MaxDepth (and member names that are not UTF-8, below).
            InvalidReason = e.Message;
        }
        if (_copyFrom >= 0)
        {
            Copy(input[_copyFrom.._lastEnd]);
        }
        if (Invalid)
        {
            // Nothing more is read: nothing is carried.
            _pendingLength = 0;
            return 0;
        }
        _readerState = reader.CurrentState;
        // The reader has read past the whitespace after the last token; its state is the same before it, so the
        // whitespace is carried and read again with what follows (a removal may take it), unless there is too much.
        var consumed = (int)reader.BytesConsumed;
        return consumed - _lastEnd > MaxCarriedWhitespace && input[_lastEnd..consumed].IndexOfAnyExcept(Whitespace) < 0 ? consumed : _lastEnd;
    }

    /// <summary>
    /// A token inside an object or array that nothing inside needs deciding: kept whole (copied with the run it is in,
    /// its member names checked), or removed or masked (nothing written until it ends).
    /// </summary>
    private void PassOver(ref Utf8JsonReader reader)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.PropertyName when _passingKept:
                CheckName(ref reader);
                break;
            case JsonTokenType.EndObject or JsonTokenType.EndArray when reader.CurrentDepth == _passing:
                _passing = -1;
                if (!_passingKept)
                {
                    _copyFrom = (int)reader.BytesConsumed;
                }
                break;
        }
    }

    private void Token(ref Utf8JsonReader reader, ReadOnlySpan<byte> input)
    {
        var token = reader.TokenType;
        switch (token)
        {
            case JsonTokenType.PropertyName:
                _member = MemberVerdict(ref reader, _frames[_depth - 1]);
                Item(input, ref _frames[_depth - 1], _member.Action == RedactionAction.Remove, (int)reader.TokenStartIndex);
                return;
            case JsonTokenType.EndObject or JsonTokenType.EndArray:
                _depth--;
                return;
        }
        var element = _depth > 0 && _frames[_depth - 1].NextIndex >= 0;
        var verdict = ValueVerdict();
        if (element)
        {
            Item(input, ref _frames[_depth - 1], verdict.Action == RedactionAction.Remove, (int)reader.TokenStartIndex);
        }
        var container = token is JsonTokenType.StartObject or JsonTokenType.StartArray;
        switch (verdict.Action)
        {
            case RedactionAction.Remove:
                Redacted++;
                break;
            case RedactionAction.Mask:
                Redacted++;
                Copy(input[_copyFrom..(int)reader.TokenStartIndex]);
                Copy(Masked);
                break;
            default:
                if (container && verdict.Rules is null && verdict.Schema is null)
                {
                    // Nothing inside can be redacted (with /users/*/ssn, all of /meta): its tokens are passed over, no frame kept.
                    _passing = reader.CurrentDepth;
                    _passingKept = true;
                }
                else if (container)
                {
                    Push(new Frame(verdict.Rules, verdict.Schema, token == JsonTokenType.StartArray ? 0 : -1));
                }
                return;
        }
        // A removed or masked value is left out up to its end.
        if (container)
        {
            _copyFrom = -1;
            _passing = reader.CurrentDepth;
            _passingKept = false;
        }
        else
        {
            _copyFrom = (int)reader.BytesConsumed;
        }
    }

    /// <summary>A member (at its name) or an element (at its first token, at <paramref name="start"/>) starts in the open object or array <paramref name="frame"/>.</summary>
    private void Item(ReadOnlySpan<byte> input, ref Frame frame, bool removed, int start)
    {
        if (removed)
        {
            // Out goes the comma before it (from the end of the kept item before it), or, when nothing before it was
            // kept, the comma after it (up to where the next kept item starts; after a removed first item, its comma
            // is this one's).
            if (!frame.DropSeparator)
            {
                Copy(input[_copyFrom..(frame.AnyKept ? _lastEnd : start)]);
            }
            _copyFrom = -1;
            frame.DropSeparator |= !frame.AnyKept;
            return;
        }
        if (frame.DropSeparator)
        {
            _copyFrom = start;
            frame.DropSeparator = false;
        }
        frame.AnyKept = true;
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
        var index = frame.NextIndex++;
        return Decide(frame.Rules?.Element(index), frame.Schema?.Element(index) ?? MemberSchema.FreeForm);
    }

    /// <summary>A member of the open object <paramref name="frame"/>, at its name: the name is checked, then decided.</summary>
    private Verdict MemberVerdict(ref Utf8JsonReader reader, in Frame frame)
    {
        if (reader.ValueIsEscaped)
        {
            return EscapedMemberVerdict(ref reader, frame);
        }
        var name = reader.ValueSpan;
        if (!_ascii && !Utf8.IsValid(name))
        {
            throw NotUtf8(ref reader);
        }
        return Decide(frame, name);
    }

    /// <summary>A name with escapes is matched (and checked) as the UTF-8 they stand for.</summary>
    private static Verdict EscapedMemberVerdict(ref Utf8JsonReader reader, in Frame frame)
    {
        var length = reader.ValueSpan.Length; // unescaped is never longer than escaped
        byte[]? rented = null;
        Span<byte> name = length <= 256 ? stackalloc byte[256] : (rented = ArrayPool<byte>.Shared.Rent(length));
        try
        {
            name = name[..reader.CopyString(name)];
            if (!Utf8.IsValid(name))
            {
                throw NotUtf8(ref reader);
            }
            return Decide(frame, name);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static Verdict Decide(in Frame frame, ReadOnlySpan<byte> name)
    {
        var rules = frame.Rules;
        var schema = frame.Schema;
        return rules?.NeedsNames != true && schema?.FiltersMembers != true
            ? Decide(rules?.Other, MemberSchema.FreeForm)
            : Decide(rules?.Member(name), schema?.Member(name) ?? MemberSchema.FreeForm);
    }

    /// <summary>Removal wins (by rule, or as undeclared), then masking; otherwise the value is kept and looked into with the inner states.</summary>
    private static Verdict Decide(RuleState? rules, MemberSchema schema) =>
        schema.Removed ? new Verdict(RedactionAction.Remove, null, null)
        : rules?.Action is { } action ? new Verdict(action, null, null)
        : new Verdict(null, rules, schema.State);

    /// <summary>
    /// The reader does not check that a member name is UTF-8; the output must be JSON, so a name that is not (raw, or
    /// once its escapes are read: a lone surrogate) makes the body invalid. A name decided by the rules is checked
    /// where it is decided (<see cref="MemberVerdict"/>).
    /// </summary>
    private void CheckName(ref Utf8JsonReader reader)
    {
        if (reader.ValueIsEscaped)
        {
            CheckEscapedName(ref reader);
        }
        else if (!_ascii && !Utf8.IsValid(reader.ValueSpan))
        {
            throw NotUtf8(ref reader);
        }
    }

    private static void CheckEscapedName(ref Utf8JsonReader reader)
    {
        var length = reader.ValueSpan.Length;
        byte[]? rented = null;
        Span<byte> name = length <= 256 ? stackalloc byte[256] : (rented = ArrayPool<byte>.Shared.Rent(length));
        try
        {
            if (!Utf8.IsValid(name[..reader.CopyString(name)]))
            {
                throw NotUtf8(ref reader);
            }
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static InvalidOperationException NotUtf8(ref Utf8JsonReader reader) =>
        new($"a member name is not UTF-8 (byte {reader.TokenStartIndex})");

    private void Copy(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_output.GetSpan(bytes.Length));
        _output.Advance(bytes.Length);
    }

    /// <summary>Adds <paramref name="data"/> after the bytes carried (a token cut by the end of the last write).</summary>
    private void Append(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }
        if (_pendingLength + data.Length > _pending.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_pendingLength + data.Length, CarryStep * 2));
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

    /// <summary>Drops the first <paramref name="count"/> carried bytes (they have been read).</summary>
    private void Shift(int count)
    {
        _pending.AsSpan(count, _pendingLength - count).CopyTo(_pending);
        _pendingLength -= count;
    }

    private void Push(Frame frame)
    {
        if (_depth == _frames.Length)
        {
            var deeper = ArrayPool<Frame>.Shared.Rent(_frames.Length * 2);
            _frames.AsSpan().CopyTo(deeper);
            ArrayPool<Frame>.Shared.Return(_frames, clearArray: true);
            _frames = deeper;
        }
        _frames[_depth++] = frame;
    }

    /// <summary>What to do with one value: <see cref="Action"/>, or (null) keep it, with the states its members or elements are in.</summary>
    private readonly record struct Verdict(RedactionAction? Action, RuleState? Rules, SchemaState? Schema);

    /// <summary>
    /// An open object (<see cref="NextIndex"/> -1) or array (the index of its next element), with the states its members
    /// or elements start from; whether one of them has been kept, and whether the comma before the next kept one goes
    /// (it followed a removed first one).
    /// </summary>
    private record struct Frame(RuleState? Rules, SchemaState? Schema, int NextIndex)
    {
        public bool AnyKept;

        public bool DropSeparator;
    }
}
