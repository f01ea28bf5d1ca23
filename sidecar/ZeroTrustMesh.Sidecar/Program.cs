using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Sidecar;

// First, before anything rents from the shared array pool and fixes its size (see RuntimeDefaults).
RuntimeDefaults.Apply();
return CommandLineOptions.Run(SidecarOptions.Command(SidecarHost.RunAsync), args);
