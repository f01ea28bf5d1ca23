using System.Runtime.InteropServices;

namespace ZeroTrustMesh.Sidecar.Tests;

/// <summary>
/// A temporary file of random bytes mapped private and read-only, as the loader maps code: what
/// <see cref="CodePages"/> releases. Read it to make it resident.
/// </summary>
internal sealed class FileMapping : IDisposable
{
    private const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2;

    private readonly string _path = Path.GetTempFileName();

    public FileMapping(int size)
    {
        Content = new byte[size];
        Random.Shared.NextBytes(Content);
        File.WriteAllBytes(_path, Content);
        using var file = File.OpenHandle(_path);
        Address = Mmap(0, (nuint)size, ProtRead, MapPrivate, (int)file.DangerousGetHandle(), 0);
        Assert.NotEqual(-1, Address);
    }

    public nint Address { get; }

    public byte[] Content { get; }

    /// <summary>This mapping as <c>/proc/self/smaps</c> describes it now.</summary>
    public CodePages.Mapping Now
    {
        get
        {
            var found = new List<CodePages.Mapping>();
            CodePages.Read("/proc/self/smaps", m =>
            {
                if (m.Start == (ulong)Address)
                {
                    found.Add(m);
                }
            });
            return Assert.Single(found);
        }
    }

    /// <summary>
    /// Pages mapped in this process now (the page table's present bit, from <c>/proc/self/pagemap</c>): unlike
    /// <see cref="Now"/>, this allocates a few KB, so a <see cref="MemoryTrimmer"/> check after it still counts as quiet.
    /// </summary>
    public int PresentPages()
    {
        var entries = new byte[Content.Length / Environment.SystemPageSize * sizeof(ulong)];
        using (var pagemap = File.OpenHandle("/proc/self/pagemap"))
        {
            Assert.Equal(entries.Length, RandomAccess.Read(pagemap, entries, (long)((ulong)Address / (ulong)Environment.SystemPageSize * sizeof(ulong))));
        }
        var present = 0;
        for (var i = 0; i < entries.Length; i += sizeof(ulong))
        {
            present += (int)(BitConverter.ToUInt64(entries, i) >> 63);
        }
        return present;
    }

    /// <summary>Reads one byte of every page (making them resident) without allocating, as running code does.</summary>
    public void Touch()
    {
        var sum = 0;
        for (var offset = 0; offset < Content.Length; offset += Environment.SystemPageSize)
        {
            sum += Marshal.ReadByte(Address, offset);
        }
        GC.KeepAlive(sum);
    }

    /// <summary>Reads every page (making them resident) and returns what was read.</summary>
    public byte[] Read()
    {
        var copy = new byte[Content.Length];
        Marshal.Copy(Address, copy, 0, copy.Length);
        return copy;
    }

    /// <summary>Writes one byte as the loader writes relocations: made writable, written, made read-only again.</summary>
    public void WriteFirstByte(byte value)
    {
        Assert.Equal(0, Mprotect(Address, (nuint)Content.Length, ProtRead | ProtWrite));
        Marshal.WriteByte(Address, value);
        Assert.Equal(0, Mprotect(Address, (nuint)Content.Length, ProtRead));
    }

    public void Dispose()
    {
        _ = Munmap(Address, (nuint)Content.Length);
        File.Delete(_path);
    }

    [DllImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static extern nint Mmap(nint address, nuint length, int protection, int flags, int fd, long offset);

    [DllImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    private static extern int Mprotect(nint address, nuint length, int protection);

    [DllImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static extern int Munmap(nint address, nuint length);
}
