using System.Formats.Asn1;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// Turns a CSR's EC public key into an <see cref="ECDsa"/> for its one proof-of-possession check.
/// <para>
/// Why not just <see cref="PublicKey.GetECDsaPublicKey"/>: on Linux with OpenSSL 3, .NET builds a legacy EC_KEY, runs
/// EC_KEY_check_key on it (twice, each with a full point multiplication by the group order), and converts it to a
/// provider key on first use. That cost ~150–190 µs of CPU per key on the benchmark host, twice the signature check
/// itself and about a third of a whole signing. OpenSSL's own import of a point costs ~8 µs.
/// </para>
/// <para>
/// No check is dropped: the point is decoded by EC_POINT_oct2point, which refuses a point that is not on the curve;
/// and on P-256 and P-384 (cofactor 1) every point on the curve other than infinity, which an uncompressed point cannot
/// encode, has the group's order, so .NET's extra order check cannot fail where this one passes.
/// Anything else (another curve, a compressed point, Windows, macOS, OpenSSL 1.1) goes through .NET's import.
/// </para>
/// </summary>
internal static class EcPublicKeys
{
    private const string P256 = "1.2.840.10045.3.1.7";
    private const string P384 = "1.3.132.0.34";

    /// <summary>Whether this process imports P-256/P-384 keys through OpenSSL 3 directly (for tests).</summary>
    public static bool UsesOpenSsl3 { get; } = OperatingSystem.IsLinux() && OpenSsl3.IsUsable();

    /// <exception cref="CryptographicException">The key is malformed or its point is not on its curve.</exception>
    public static ECDsa Import(PublicKey key)
    {
        if (UsesOpenSsl3 && OperatingSystem.IsLinux())
        {
            var curve = CurveOf(key);
            var point = key.EncodedKeyValue.RawData;
            var fieldBytes = curve switch { P256 => 32, P384 => 48, _ => 0 };
            if (fieldBytes > 0 && point.Length == 1 + (2 * fieldBytes) && point[0] == 0x04) // uncompressed
            {
                return OpenSsl3.Import(p384: curve == P384, point);
            }
        }
        return key.GetECDsaPublicKey() ?? throw new CryptographicException("the key is not an EC key");
    }

    private static string? CurveOf(PublicKey key)
    {
        try
        {
            return key.EncodedParameters?.RawData is { Length: > 2 } p ? AsnDecoder.ReadObjectIdentifier(p, AsnEncodingRules.DER, out _) : null;
        }
        catch (AsnContentException)
        {
            return null; // .NET's import says what is wrong with it
        }
    }

    /// <summary>
    /// OpenSSL 3 calls into the libcrypto the runtime itself uses (same soname, same version: the key handle is handed to
    /// <see cref="ECDsaOpenSsl"/>, which calls into that library). Each key is a copy of a template that holds only the
    /// curve (EVP_PKEY_dup) given its point (EVP_PKEY_set1_encoded_public_key, how libssl takes a peer's key share):
    /// ~8 µs, where building the curve for every key (EVP_PKEY_fromdata) costs ~25 µs.
    /// </summary>
    [SupportedOSPlatform("linux")]
    private static class OpenSsl3
    {
        private const string Library = "libcrypto.so.3";

        // Curve-only keys, shared: OpenSSL objects may be read from several threads at once, and these are never changed.
        private static readonly Lazy<nint> P256Template = new(() => CurveOnlyKey("prime256v1"));
        private static readonly Lazy<nint> P384Template = new(() => CurveOnlyKey("secp384r1"));

        public static bool IsUsable()
        {
            try
            {
                return SafeEvpPKeyHandle.OpenSslVersion >= 0x3000_0000 && (long)OpenSSL_version_num() == SafeEvpPKeyHandle.OpenSslVersion
                    && P256Template.Value != 0 && P384Template.Value != 0;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or PlatformNotSupportedException)
            {
                return false;
            }
        }

        public static ECDsaOpenSsl Import(bool p384, byte[] point)
        {
            var key = EVP_PKEY_dup((p384 ? P384Template : P256Template).Value);
            if (key == 0)
            {
                ERR_clear_error();
                throw new CryptographicException("OpenSSL could not copy the curve's key template");
            }
            using var handle = new SafeEvpPKeyHandle(key, ownsHandle: true);
            if (EVP_PKEY_set1_encoded_public_key(handle, point, (nuint)point.Length) != 1) // refuses a point off the curve
            {
                ERR_clear_error(); // the reason stays in OpenSSL's per-thread queue otherwise
                throw new CryptographicException("the EC public key is not a valid point on its curve");
            }
            return new ECDsaOpenSsl(handle); // takes its own reference
        }

        /// <summary>EVP_PKEY_fromdata with only OSSL_PKEY_PARAM_GROUP_NAME; 0 if OpenSSL refuses.</summary>
        private static nint CurveOnlyKey(string group)
        {
            var context = EVP_PKEY_CTX_new_from_name(0, "EC\0"u8.ToArray(), 0);
            var groupKey = Marshal.StringToCoTaskMemUTF8("group");
            var groupName = Marshal.StringToCoTaskMemUTF8(group);
            try
            {
                OsslParam[] parameters = [new(groupKey, 4 /* OSSL_PARAM_UTF8_STRING */, groupName, (nuint)group.Length), default /* OSSL_PARAM_END */];
                nint key = 0; // EVP_PKEY_fromdata allocates the key only if this is NULL
                const int KeyParameters = 0x84; // EVP_PKEY_KEY_PARAMETERS: domain and other parameters, no key
                if (context == 0 || EVP_PKEY_fromdata_init(context) != 1 || EVP_PKEY_fromdata(context, ref key, KeyParameters, parameters) != 1)
                {
                    ERR_clear_error();
                    return 0;
                }
                return key;
            }
            finally
            {
                EVP_PKEY_CTX_free(context);
                Marshal.FreeCoTaskMem(groupKey);
                Marshal.FreeCoTaskMem(groupName);
            }
        }

        /// <summary>OSSL_PARAM; return_size starts as OSSL_PARAM_UNMODIFIED.</summary>
        [StructLayout(LayoutKind.Sequential)]
        private readonly struct OsslParam(nint key, uint dataType, nint data, nuint dataSize)
        {
            public readonly nint Key = key;
            public readonly uint DataType = dataType;
            public readonly nint Data = data;
            public readonly nuint DataSize = dataSize;
            public readonly nuint ReturnSize = key == 0 ? 0 : nuint.MaxValue;
        }

        [DllImport(Library)]
        private static extern ulong OpenSSL_version_num();

        [DllImport(Library)]
        private static extern nint EVP_PKEY_CTX_new_from_name(nint libraryContext, byte[] name, nint propertyQuery);

        [DllImport(Library)]
        private static extern int EVP_PKEY_fromdata_init(nint context);

        [DllImport(Library)]
        private static extern int EVP_PKEY_fromdata(nint context, ref nint key, int selection, [In] OsslParam[] parameters);

        [DllImport(Library)]
        private static extern void EVP_PKEY_CTX_free(nint context);

        [DllImport(Library)]
        private static extern nint EVP_PKEY_dup(nint key);

        [DllImport(Library)]
        private static extern int EVP_PKEY_set1_encoded_public_key(SafeEvpPKeyHandle key, byte[] point, nuint length);

        [DllImport(Library)]
        private static extern void ERR_clear_error();
    }
}
