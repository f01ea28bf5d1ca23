using System.Buffers;
using System.Buffers.Text;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

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
/// <para>
/// smaps is read into a pooled buffer and parsed as bytes: it is about 1 MB of text, and as strings that was 1 MB of
/// garbage per release, enough on its own to make an idle sidecar look busy to the trimmer's next check.
/// </para>
/// </summary>
internal static class CodePages
{
    private const int MadviseDontNeed = 4;
    private const int BufferSize = 64 << 10;

    /// <summary>A mapping as <c>/proc/self/smaps</c> describes it (only what deciding a release needs).</summary>
    internal readonly record struct Mapping(ulong Start, ulong End, bool Writable, bool Private, bool FileBacked, long RssKb, long AnonymousKb)
    {
        /// <summary>Never written, private, backed by a file (not [vdso], [heap] or anonymous memory), and resident.</summary>
        public bool IsCleanFileMapping => !Writable && Private && FileBacked && AnonymousKb == 0 && RssKb > 0;
    }

    /// <summary>Releases this process's clean file mappings (Linux only); returns the resident kilobytes released.</summary>
    public static long Release()
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }
        long released = 0;
        try
        {
            Read("/proc/self/smaps", mapping =>
            {
                // Advised as soon as the mapping's record is complete: smaps resumes at the next mapping's address.
                if (mapping.IsCleanFileMapping && Madvise((nint)mapping.Start, (nuint)(mapping.End - mapping.Start), MadviseDontNeed) == 0)
                {
                    released += mapping.RssKb;
                }
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // no /proc (a locked-down container): nothing (more) is released, nothing breaks
        }
        return released;
    }

    /// <summary>Every mapping of an smaps file, in order, read in pieces of a pooled buffer (64 KB unless a test asks for less).</summary>
    internal static void Read(string path, Action<Mapping> each, int bufferSize = BufferSize)
    {
        using var file = File.OpenHandle(path);
        var rented = ArrayPool<byte>.Shared.Rent(bufferSize);
        try
        {
            var buffer = rented.AsSpan(0, bufferSize);
            var parser = new Parser();
            long offset = 0;
            var kept = 0; // bytes of an unfinished line at the start of the buffer
            while (true)
            {
                var read = RandomAccess.Read(file, buffer[kept..], offset);
                offset += read;
                var text = buffer[..(kept + read)];
                int newline;
                while ((newline = text.IndexOf((byte)'\n')) >= 0)
                {
                    if (parser.Line(text[..newline]) is { } done)
                    {
                        each(done);
                    }
                    text = text[(newline + 1)..];
                }
                if (read == 0)
                {
                    if (parser.Line(text) is { } beforeLast)
                    {
                        each(beforeLast);
                    }
                    if (parser.Last is { } last)
                    {
                        each(last);
                    }
                    return;
                }
                // A line longer than the whole buffer cannot be a mapping's header or a field smaps writes: drop it.
                kept = text.Length < buffer.Length ? text.Length : 0;
                text[..kept].CopyTo(buffer);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>smaps, a line at a time: a header line per mapping (<c>start-end perms offset dev inode path</c>), then its <c>Key: value kB</c> lines.</summary>
    internal struct Parser
    {
        private Mapping? _current;

        /// <summary>The mapping still being read, complete once the text ends.</summary>
        public readonly Mapping? Last => _current;

        /// <summary>Takes one line (no newline); returns the mapping a header line completes.</summary>
        public Mapping? Line(ReadOnlySpan<byte> line)
        {
            var space = line.IndexOf((byte)' ');
            if (space <= 0)
            {
                return null;
            }
            if (line[space - 1] != (byte)':')
            {
                var done = _current;
                _current = Header(line);
                return done;
            }
            if (_current is not { } mapping)
            {
                return null;
            }
            if (line.StartsWith("Rss:"u8))
            {
                _current = mapping with { RssKb = Kilobytes(line[space..]) };
            }
            else if (line.StartsWith("Anonymous:"u8))
            {
                _current = mapping with { AnonymousKb = Kilobytes(line[space..]) };
            }
            return null;
        }

        private static Mapping? Header(ReadOnlySpan<byte> line)
        {
            var dash = line.IndexOf((byte)'-');
            var space = line.IndexOf((byte)' ');
            if (dash <= 0 || space <= dash || line.Length < space + 5
                || !Utf8Parser.TryParse(line[..dash], out ulong start, out var startLength, 'x') || startLength != dash
                || !Utf8Parser.TryParse(line[(dash + 1)..space], out ulong end, out var endLength, 'x') || endLength != space - dash - 1)
            {
                return null;
            }
            var permissions = line.Slice(space + 1, 4);
            // The path is whatever follows the fifth field (offset, device and inode first); it may hold spaces.
            var rest = line[(space + 5)..];
            for (var field = 0; field < 3; field++)
            {
                rest = rest.TrimStart((byte)' ');
                var next = rest.IndexOf((byte)' ');
                rest = next < 0 ? [] : rest[next..];
            }
            return new Mapping(start, end, permissions[1] == (byte)'w', permissions[3] == (byte)'p', rest.TrimStart((byte)' ').StartsWith("/"u8), 0, 0);
        }

        private static long Kilobytes(ReadOnlySpan<byte> value) =>
            Utf8Parser.TryParse(value.TrimStart((byte)' '), out long kb, out _) ? kb : 0;
    }

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern int Madvise(nint address, nuint length, int advice);
}
