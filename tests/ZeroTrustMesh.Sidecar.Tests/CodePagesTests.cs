namespace ZeroTrustMesh.Sidecar.Tests;

public sealed class CodePagesTests
{
    private const string Smaps = """
        55d0c0000000-55d0c0022000 r--p 00000000 fe:00 11706374                   /opt/ztm/ztm-sidecar
        Size:                136 kB
        Rss:                 128 kB
        Anonymous:             0 kB
        VmFlags: rd mr mw me dw sd
        55d0c0022000-55d0c09a7000 r-xp 00022000 fe:00 11706374                   /opt/ztm/ztm-sidecar
        Size:               9748 kB
        Rss:                9136 kB
        Anonymous:             0 kB
        VmFlags: rd ex mr mw me dw sd
        55d0c12de000-55d0c12e0000 r--p 012de000 fe:00 11706374                   /opt/ztm/ztm-sidecar
        Size:                  8 kB
        Rss:                   8 kB
        Anonymous:             8 kB
        55d0c12e0000-55d0c1325000 rw-p 012e0000 fe:00 11706374                   /opt/ztm/ztm-sidecar
        Rss:                 160 kB
        Anonymous:           116 kB
        55d0c1325000-55d0c1880000 rw-p 00000000 00:00 0
        Rss:                5336 kB
        Anonymous:          5336 kB
        7f0000000000-7f0000100000 r--s 00000000 fe:00 42                         /dev/shm/shared
        Rss:                  64 kB
        Anonymous:             0 kB
        7f0000200000-7f0000300000 r--p 00000000 fe:00 43                         /usr/lib/with space/libx.so
        Rss:                  64 kB
        Anonymous:             0 kB
        7f0000400000-7f0000500000 r--p 00000000 fe:00 44                         /usr/lib/libcold.so
        Rss:                   0 kB
        Anonymous:             0 kB
        7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
        Rss:                   8 kB
        Anonymous:             0 kB
        """;

    [Fact]
    public void Only_resident_private_file_mappings_that_were_never_written_are_released()
    {
        var mappings = Parse(Smaps);

        Assert.Equal(9, mappings.Count);
        Assert.Equal(new CodePages.Mapping(0x55d0c0022000UL, 0x55d0c09a7000UL, Writable: false, Private: true, FileBacked: true, 9136, 0), mappings[1]);
        Assert.Equal(new CodePages.Mapping(0x55d0c12e0000UL, 0x55d0c1325000UL, Writable: true, Private: true, FileBacked: true, 160, 116), mappings[3]);
        Assert.True(mappings[6].FileBacked); // a path with a space in it
        Assert.False(mappings[4].FileBacked);
        Assert.False(mappings[5].Private);
        // Released: the executable's read-only data and code, a library's. Kept: RELRO (written by the loader),
        // data, anonymous memory, a shared mapping, a mapping with nothing resident, the vDSO.
        Assert.Equal([true, true, false, false, false, false, true, false, false], mappings.Select(m => m.IsCleanFileMapping));
    }

    [Theory]
    [InlineData(128)]
    [InlineData(200)]
    [InlineData(333)]
    [InlineData(64 << 10)]
    public void Smaps_cut_anywhere_across_reads_parses_the_same(int bufferSize)
    {
        // The reader keeps a line cut at a read's end for the next read: every cut gives the same mappings.
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, Smaps.Replace("\r", "", StringComparison.Ordinal));
            Assert.Equal(Parse(Smaps), Read(path, bufferSize));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_file_without_a_final_newline_or_with_a_garbled_header_still_parses()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "zz-55d0c0022000 r-xp 0 fe:00 1 /x\nRss: 4 kB\n55d0c0022000-55d0c0023000 r-xp 0 fe:00 1 /x\nRss:   4 kB\nAnonymous: 0 kB");
            var mapping = Assert.Single(Read(path));
            Assert.Equal(new CodePages.Mapping(0x55d0c0022000UL, 0x55d0c0023000UL, false, true, true, 4, 0), mapping);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Releasing_allocates_next_to_nothing()
    {
        // It runs when the sidecar has gone quiet; 1 MB of strings (as it once allocated) made the next check look busy.
        using var clean = new FileMapping(1 << 20);
        clean.Read();
        CodePages.Release(); // first call: the pool's buffer, the handle's type set-up
        // The least of three calls: one CI run saw a single call allocate 8,320 bytes once (a one-off of the runtime's,
        // beside other test classes); a release that allocates per call, as the 1 MB of strings did, fails all three.
        var least = long.MaxValue;
        for (var round = 0; round < 3; round++)
        {
            clean.Read();
            var before = GC.GetAllocatedBytesForCurrentThread();
            var releasedKb = CodePages.Release();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
            Assert.True(releasedKb >= 1024, $"released {releasedKb} kB");
        }

        Assert.True(least < 4096, $"releasing allocated {least} bytes");
    }

    [Fact]
    public void Released_pages_read_back_the_same_and_a_written_private_page_keeps_its_write()
    {
        const int Size = 4 << 20;
        using var clean = new FileMapping(Size);
        using var written = new FileMapping(Size);
        // A private page written and made read-only again, as the loader does with RELRO: the write must survive.
        var changed = (byte)(written.Content[0] ^ 0xFF);
        written.WriteFirstByte(changed);
        clean.Read();
        Assert.True(clean.Now.RssKb >= Size / 1024, $"the clean mapping was not resident: {clean.Now.RssKb} kB");

        var releasedKb = CodePages.Release();

        Assert.True(releasedKb >= Size / 1024, $"released {releasedKb} kB");
        Assert.Equal(0, clean.Now.RssKb);
        Assert.Equal(clean.Content, clean.Read());
        Assert.Equal(changed, written.Read()[0]);
        Assert.True(written.Now.AnonymousKb > 0);
    }

    private static List<CodePages.Mapping> Parse(string smaps)
    {
        var parser = new CodePages.Parser();
        var mappings = new List<CodePages.Mapping>();
        foreach (var line in smaps.Split('\n'))
        {
            if (parser.Line(System.Text.Encoding.UTF8.GetBytes(line.TrimEnd('\r'))) is { } done)
            {
                mappings.Add(done);
            }
        }
        if (parser.Last is { } last)
        {
            mappings.Add(last);
        }
        return mappings;
    }

    private static List<CodePages.Mapping> Read(string path, int bufferSize = 64 << 10)
    {
        var mappings = new List<CodePages.Mapping>();
        CodePages.Read(path, mappings.Add, bufferSize);
        return mappings;
    }
}
