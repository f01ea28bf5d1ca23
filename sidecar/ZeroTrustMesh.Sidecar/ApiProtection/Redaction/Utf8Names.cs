using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

/// <summary>
/// Member names (of rules' pointers, of a schema's <c>properties</c>) looked up by their UTF-8 bytes, as
/// <see cref="System.Text.Json.Utf8JsonReader"/> reads them: a response's names are matched without being decoded, and
/// without allocating. UTF-8 byte equality is ordinal string equality for valid UTF-8, which is all a name can be once
/// <see cref="JsonRedaction"/> has checked it. Immutable once built.
/// </summary>
internal sealed class Utf8Names<T>
{
    /// <summary>Fails on a lone surrogate: such a name can never be read from valid UTF-8, so it is not kept.</summary>
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Dictionary<byte[], T> _names = new(Utf8Comparer.Instance);
    private readonly Dictionary<byte[], T>.AlternateLookup<ReadOnlySpan<byte>> _lookup;

    /// <summary>
    /// Bit n set: some name is n bytes long (bit 63: 63 or more). Most member names of a response are named by no rule
    /// and most of those are told apart by their length alone, without hashing them.
    /// </summary>
    private ulong _lengths;

    public Utf8Names(IEnumerable<KeyValuePair<string, T>> names)
    {
        foreach (var (name, value) in names)
        {
            byte[] utf8;
            try
            {
                utf8 = Strict.GetBytes(name);
            }
            catch (EncoderFallbackException)
            {
                continue;
            }
            _names[utf8] = value;
            _lengths |= LengthBit(utf8.Length);
        }
        _lookup = _names.GetAlternateLookup<ReadOnlySpan<byte>>();
    }

    public int Count => _names.Count;

    public bool TryGetValue(ReadOnlySpan<byte> name, [MaybeNullWhen(false)] out T value)
    {
        if ((_lengths & LengthBit(name.Length)) == 0)
        {
            value = default;
            return false;
        }
        return _lookup.TryGetValue(name, out value);
    }

    private static ulong LengthBit(int length) => 1UL << Math.Min(length, 63);

    private sealed class Utf8Comparer : IEqualityComparer<byte[]>, IAlternateEqualityComparer<ReadOnlySpan<byte>, byte[]>
    {
        public static readonly Utf8Comparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] obj) => GetHashCode(obj.AsSpan());

        public bool Equals(ReadOnlySpan<byte> alternate, byte[] other) => alternate.SequenceEqual(other);

        public int GetHashCode(ReadOnlySpan<byte> alternate)
        {
            var hash = new HashCode();
            hash.AddBytes(alternate);
            return hash.ToHashCode();
        }

        public byte[] Create(ReadOnlySpan<byte> alternate) => alternate.ToArray();
    }
}
