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
/// itself and about a third of a whole signing. OpenSSL's own import (EVP_PKEY_fromdata) costs ~25 µs.
/// </para>
/// <para>
/// No check is dropped: EVP_PKEY_fromdata decodes the point with EC_POINT_oct2point, which refuses a point that is not
/// on the curve; and on P-256 and P-384 (cofactor 1) every point on the curve other than infinity, which an uncompressed
/// point cannot encode, has the group's order, so .NET's extra order check cannot fail where this one passes.
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
            var (group, fieldBytes) = curve switch
            {
                P256 => ("prime256v1", 32),
                P384 => ("secp384r1", 48),
                _ => (null, 0),
            };
            if (group is not null && point.Length == 1 + (2 * fieldBytes) && point[0] == 0x04) // uncompressed
            {
                return OpenSsl3.Import(group, point);
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
    /// EVP_PKEY_fromdata in the libcrypto the runtime itself uses (same soname, same version: the key handle is handed
    /// to <see cref="ECDsaOpenSsl"/>, which calls into that library).
    /// </summary>
    [SupportedOSPlatform("linux")]
    private static class OpenSsl3
    {
        private const string Library = "libcrypto.so.3";
        private const uint Utf8String = 4; // OSSL_PARAM_UTF8_STRING
        private const uint OctetString = 5; // OSSL_PARAM_OCTET_STRING
        private const int PublicKeySelection = 0x86; // EVP_PKEY_PUBLIC_KEY: the domain parameters and the public key

        // Process-lifetime native strings for the OSSL_PARAM keys and values.
        private static readonly nint GroupParam = Marshal.StringToCoTaskMemUTF8("group");
        private static readonly nint PublicKeyParam = Marshal.StringToCoTaskMemUTF8("pub");
        private static readonly Dictionary<string, nint> Groups = new()
        {
            ["prime256v1"] = Marshal.StringToCoTaskMemUTF8("prime256v1"),
            ["secp384r1"] = Marshal.StringToCoTaskMemUTF8("secp384r1"),
        };
        private static readonly byte[] Ec = "EC\0"u8.ToArray();

        public static bool IsUsable()
        {
            try
            {
                return SafeEvpPKeyHandle.OpenSslVersion >= 0x3000_0000 && (long)OpenSSL_version_num() == SafeEvpPKeyHandle.OpenSslVersion;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or PlatformNotSupportedException)
            {
                return false;
            }
        }

        public static ECDsaOpenSsl Import(string group, byte[] point)
        {
            var pinned = GCHandle.Alloc(point, GCHandleType.Pinned);
            var context = EVP_PKEY_CTX_new_from_name(0, Ec, 0);
            try
            {
                OsslParam[] parameters =
                [
                    new(GroupParam, Utf8String, Groups[group], (nuint)group.Length),
                    new(PublicKeyParam, OctetString, pinned.AddrOfPinnedObject(), (nuint)point.Length),
                    default, // OSSL_PARAM_END
                ];
                nint key = 0; // EVP_PKEY_fromdata allocates the key only if this is NULL
                if (context == 0 || EVP_PKEY_fromdata_init(context) != 1 || EVP_PKEY_fromdata(context, ref key, PublicKeySelection, parameters) != 1 || key == 0)
                {
                    ERR_clear_error(); // the reason stays in OpenSSL's per-thread queue otherwise
                    throw new CryptographicException("the EC public key is not a valid point on its curve");
                }
                using var handle = new SafeEvpPKeyHandle(key, ownsHandle: true);
                return new ECDsaOpenSsl(handle); // takes its own reference
            }
            finally
            {
                EVP_PKEY_CTX_free(context);
                pinned.Free();
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
        private static extern void ERR_clear_error();
    }
}
