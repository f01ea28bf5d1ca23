using System.Globalization;
using System.Runtime.InteropServices;

namespace ZeroTrustMesh.Sidecar;

/// <summary>
/// Unmaps the code and read-only data the sidecar is not running: once it is ready, and again whenever it goes quiet
/// after a burst (<see cref="MemoryTrimmer"/>). Building the host, reading options, the first certificate and the
/// first policy run a great deal of code exactly once (Kestrel and DI set-up, OpenSSL's provider loading, the gRPC
/// channel), and the kernel maps executable pages 64 KB around each fault: at idle the sidecar kept 9 of its 9.7 MB of
/// code and 8 of 9.5 MB of read-only data resident, plus 3.7 MB of libcrypto, for a request path that touches about a
/// third of that. A burst does the same on a smaller scale: HTTP/2, gRPC and a run of new mTLS connections each bring
/// their own code in (measured: 12 MB of file pages at idle, 17.6 MB after the benchmark's capacity phases), and it
/// stays mapped when the traffic that needed it has gone.
/// <para>
/// Only private file mappings that were never written (no anonymous pages: <c>Anonymous: 0 kB</c> in smaps) are
/// released, with <c>madvise(MADV_DONTNEED)</c>. For those, dropping the page-table entries is what the kernel's own
/// reclaim does under memory pressure: the next access maps the same page again from the page cache (a minor fault,
/// no I/O), so nothing can be lost. A mapping with any written page (relocations, RELRO, data) is left alone, because
/// there the call would throw the writes away. The pages stay in the page cache until the kernel needs the memory:
/// the sidecar's resident set becomes the code it runs, not the code it ran once.
/// </para>
/// </summary>
internal static class CodePages
{
    private const int MadviseDontNeed = 4;

    /// <summary>A mapping of a file, as <c>/proc/self/smaps</c> describes it.</summary>
    internal readonly record struct Mapping(ulong Start, ulong End, string Permissions, string Path, long RssKb, long AnonymousKb)
    {
        /// <summary>Never written, private, backed by a file (not [vdso], [heap] or anonymous memory), and resident.</summary>
        public bool IsCleanFileMapping =>
            Permissions.Length == 4 && Permissions[1] == '-' && Permissions[3] == 'p'
            && Path.StartsWith('/') && AnonymousKb == 0 && RssKb > 0;
    }

    /// <summary>Releases this process's clean file mappings (Linux only); returns the resident kilobytes released.</summary>
    public static long Release()
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }
        List<Mapping> mappings;
        try
        {
            mappings = Parse(File.ReadLines("/proc/self/smaps")).Where(m => m.IsCleanFileMapping).ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0; // no /proc (a locked-down container): nothing is released, nothing breaks
        }
        long released = 0;
        foreach (var mapping in mappings)
        {
            if (Madvise((nint)mapping.Start, (nuint)(mapping.End - mapping.Start), MadviseDontNeed) == 0)
            {
                released += mapping.RssKb;
            }
        }
        return released;
    }

    /// <summary>The mappings in smaps format: a header line per mapping, then its <c>Key: value kB</c> lines.</summary>
    internal static IEnumerable<Mapping> Parse(IEnumerable<string> smaps)
    {
        Mapping? current = null;
        foreach (var line in smaps)
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (space <= 0)
            {
                continue;
            }
            if (line[space - 1] != ':')
            {
                // A header, "start-end perms offset dev inode   path": the path is whatever follows the fifth field.
                if (current is { } done)
                {
                    yield return done;
                }
                var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
                var range = fields[0].Split('-');
                current = new Mapping(ulong.Parse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                    ulong.Parse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture), fields[1],
                    fields.Length > 5 ? fields[5].Trim() : "", 0, 0);
            }
            else if (current is { } mapping && line.StartsWith("Rss:", StringComparison.Ordinal))
            {
                current = mapping with { RssKb = Kilobytes(line) };
            }
            else if (current is { } written && line.StartsWith("Anonymous:", StringComparison.Ordinal))
            {
                current = written with { AnonymousKb = Kilobytes(line) };
            }
        }
        if (current is { } last)
        {
            yield return last;
        }
    }

    private static long Kilobytes(string line) =>
        long.Parse(line.AsSpan(line.IndexOf(':', StringComparison.Ordinal) + 1).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern int Madvise(nint address, nuint length, int advice);
}
