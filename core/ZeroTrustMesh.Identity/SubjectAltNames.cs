using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.Identity;

/// <summary>The subject alternative names of a certificate or CSR, split into URIs and everything else.</summary>
public sealed record SubjectAltNames(IReadOnlyList<string> Uris, int OtherNames)
{
    public static readonly SubjectAltNames None = new([], 0);

    public const string Oid = "2.5.29.17";

    public int Count => Uris.Count + OtherNames;

    /// <summary>Reads the SAN extension among <paramref name="extensions"/>; <see cref="None"/> if absent.</summary>
    /// <exception cref="AsnContentException">The extension is not valid DER.</exception>
    public static SubjectAltNames From(IEnumerable<X509Extension> extensions)
    {
        var san = extensions.FirstOrDefault(e => e.Oid?.Value == Oid);
        return san is null ? None : Parse(san.RawData);
    }

    /// <summary>Parses a DER <c>GeneralNames</c>; URIs are <c>[6] IA5String</c> (RFC 5280 §4.2.1.6).</summary>
    public static SubjectAltNames Parse(ReadOnlyMemory<byte> der)
    {
        var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
        var reader = new AsnReader(der, AsnEncodingRules.DER);
        var names = reader.ReadSequence();
        reader.ThrowIfNotEmpty();
        var uris = new List<string>();
        var others = 0;
        while (names.HasData)
        {
            if (names.PeekTag() == uriTag)
            {
                uris.Add(names.ReadCharacterString(UniversalTagNumber.IA5String, uriTag));
            }
            else
            {
                names.ReadEncodedValue();
                others++;
            }
        }
        return new SubjectAltNames(uris, others);
    }

    /// <summary>A SAN extension holding exactly one URI.</summary>
    public static X509Extension ForUri(string uri, bool critical = false)
    {
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            writer.WriteCharacterString(UniversalTagNumber.IA5String, uri, new Asn1Tag(TagClass.ContextSpecific, 6));
        }
        return new X509Extension(Oid, writer.Encode(), critical);
    }
}
