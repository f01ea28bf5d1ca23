using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Sidecar;

return CommandLineOptions.Run(SidecarOptions.Command(SidecarHost.RunAsync), args);
