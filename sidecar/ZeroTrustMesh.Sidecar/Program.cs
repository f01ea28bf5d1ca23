using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Sidecar;
using ZeroTrustMesh.Sidecar.Tls;

// First, before anything rents from the shared array pool and fixes its size (see RuntimeDefaults), and before the
// first TLS handshake reads the OS's CA store (see SystemTrustStore).
RuntimeDefaults.Apply();
SystemTrustStore.Detach();
return CommandLineOptions.Run(SidecarOptions.Command(SidecarHost.RunAsync), args);
