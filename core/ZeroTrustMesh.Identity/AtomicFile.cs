namespace ZeroTrustMesh.Identity;

/// <summary>
/// State files (keys, credentials, the control plane's stores) written so that no reader and no crash ever sees half
/// of one: the contents go to a temporary file created with the final mode, reach the disk, and are then renamed over
/// the old file.
/// </summary>
public static class AtomicFile
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Replaces <paramref name="path"/> with <paramref name="contents"/>, mode 0600: keys, tokens, credentials, state.</summary>
    public static void WriteOwnerOnly(string path, string contents) => Write(path, contents, OwnerOnly);

    /// <summary>Replaces <paramref name="path"/> with <paramref name="contents"/>, mode 0644: certificates, bundles, policy files.</summary>
    public static void WriteReadable(string path, string contents) =>
        Write(path, contents, OwnerOnly | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

    private static void Write(string path, string contents, UnixFileMode mode)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + ".tmp";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = mode;
        }
        using (var stream = new FileStream(temp, options))
        {
            using (var writer = new StreamWriter(stream, leaveOpen: true))
            {
                writer.Write(contents);
            }
            // On disk before the rename: after a power loss the old file or the new one, never an empty one.
            stream.Flush(flushToDisk: true);
        }
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(temp, mode); // the file may have existed with looser bits
        }
        File.Move(temp, path, overwrite: true);
    }
}
