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
        var mappings = CodePages.Parse(Smaps.Split('\n')).ToList();

        Assert.Equal(9, mappings.Count);
        Assert.Equal((0x55d0c0022000UL, 0x55d0c09a7000UL, "r-xp", "/opt/ztm/ztm-sidecar", 9136L, 0L),
            (mappings[1].Start, mappings[1].End, mappings[1].Permissions, mappings[1].Path, mappings[1].RssKb, mappings[1].AnonymousKb));
        Assert.Equal("/usr/lib/with space/libx.so", mappings[6].Path);
        // Released: the executable's read-only data and code, a library's. Kept: RELRO (written by the loader),
        // data, anonymous memory, a shared mapping, a mapping with nothing resident, the vDSO.
        Assert.Equal([true, true, false, false, false, false, true, false, false], mappings.Select(m => m.IsCleanFileMapping));
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
}
