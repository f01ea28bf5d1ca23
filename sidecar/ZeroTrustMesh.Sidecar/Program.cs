using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Sidecar;

// Run socket completions on the event thread instead of hopping to the thread pool for each one. A sidecar does no
// blocking work on a request's path (forwarding is asynchronous, a decision is a table lookup), and each hop costs a
// thread wake-up: measured, this is most of the sidecar's CPU per request at low rates. Read once, by the socket
// engine, before its first use, so it must be set before anything opens a socket. An operator's own value wins.
if (Environment.GetEnvironmentVariable(SidecarHost.InlineCompletionsVariable) is null)
{
    Environment.SetEnvironmentVariable(SidecarHost.InlineCompletionsVariable, "1");
}

return CommandLineOptions.Run(SidecarOptions.Command(SidecarHost.RunAsync), args);
