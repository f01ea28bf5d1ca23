using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Sidecar;
using ZeroTrustMesh.Sidecar.Tls;

// First, before the first TLS handshake reads the OS's CA store (see SystemTrustStore).
SystemTrustStore.Detach();
return CommandLineOptions.Run(SidecarOptions.Command(SidecarHost.RunAsync), args);
