using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Sidecar;
using ZeroTrustMesh.Sidecar.Capture;
using ZeroTrustMesh.Sidecar.Tls;

// First, before the first TLS handshake reads the OS's CA store (see SystemTrustStore).
SystemTrustStore.Detach();
var command = SidecarOptions.Command(SidecarHost.RunAsync);
// The pod's traffic-capture init step lives in the same binary and image, as Istio's does.
command.Subcommands.Add(CaptureCommand.Create());
return CommandLineOptions.Run(command, args);
