using System.Globalization;
using System.Text.RegularExpressions;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// The nginx pair, configured in the run's temporary directory, each side one process in the foreground
/// (<c>daemon off; master_process off</c>: one worker, so its PID is the whole proxy for CPU and memory), pid file,
/// error log and temp paths in that directory, stopped by PID:
/// 1. client side: plain HTTP/1.1 in (and h2c prior knowledge on a second port), <c>proxy_pass https://</c> with a client
///    SVID (<c>proxy_ssl_certificate</c>), TLS 1.3, keep-alive upstream over TLS (HTTP/1.1: nginx's proxy module speaks
///    no HTTP/2 upstream); gRPC by <c>grpc_pass grpcs://</c> (HTTP/2 over TLS, ALPN h2) with the same SVID;
/// 2. server side: <c>ssl_verify_client on</c> against the mesh bundle, sets the identity header, plain HTTP/1.1
///    keep-alive to the app (gRPC: <c>grpc_pass</c> h2c to the app's gRPC port).
/// The client side does not verify the server's certificate: nginx checks the upstream's name against DNS SANs or the
/// subject CN (<c>X509_check_host</c>) whenever <c>proxy_ssl_verify</c> is on, and an SVID carries only a URI SAN, so
/// verification against the bundle cannot pass. The report says so.
/// </summary>
internal static partial class NginxPair
{
    public const string UpstreamVerification = "nginx's client side sends its SVID but does not verify the server's (proxy_ssl_verify needs a DNS SAN or CN to match, an SVID has only the URI SAN)";

    /// <summary>The installed version, e.g. (1, 22, 1); null when nginx is absent or unreadable.</summary>
    public static Version? InstalledVersion()
    {
        var line = LoadHost.FirstLine("nginx", "-v");
        return VersionPattern().Match(line) is { Success: true } m ? Version.Parse(m.Groups[1].Value) : null;
    }

    public static async Task<ProxyPair> StartAsync(PairSetup setup, CancellationToken cancellation)
    {
        var dir = Directory.CreateDirectory(Path.Combine(setup.Root, "nginx")).FullName;
        await ProxyPair.WriteCertificatesAsync(setup, dir, "nginx", cancellation);
        var version = InstalledVersion() ?? new Version(0, 0);
        var clientPort = LoadHost.FreePort();
        var h2Port = LoadHost.FreePort();
        var serverPort = LoadHost.FreePort();
        var grpcPrefix = setup.GrpcPath[..(setup.GrpcPath.LastIndexOf('/') + 1)];
        // Before 1.25.1 h2c is 'listen … http2' (prior knowledge only); from 1.25.1 'http2 on;' (the listen flag is deprecated).
        var h2Listen = version >= new Version(1, 25, 1) ? $"listen 127.0.0.1:{h2Port};\n        http2 on;" : $"listen 127.0.0.1:{h2Port} http2;";
        var upstreamTls = $"""
                proxy_ssl_certificate {dir}/client.pem;
                proxy_ssl_certificate_key {dir}/client.pem;
                proxy_ssl_trusted_certificate {dir}/ca.pem;
                proxy_ssl_verify off;
                proxy_ssl_protocols TLSv1.3;
                grpc_ssl_certificate {dir}/client.pem;
                grpc_ssl_certificate_key {dir}/client.pem;
                grpc_ssl_trusted_certificate {dir}/ca.pem;
                grpc_ssl_verify off;
                grpc_ssl_protocols TLSv1.3;
        """;
        var locations = $$"""
                location / {
                    proxy_pass https://orders_http;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_set_header Host $host;
                }
                location {{grpcPrefix}} {
                    grpc_pass grpcs://orders_grpc;
                }
        """;
        var client = await StartSideAsync(setup, dir, "nginx-client", $$"""
                upstream orders_http {
                    server 127.0.0.1:{{serverPort}};
                    keepalive 64;
                    keepalive_requests 1000000;
                }
                upstream orders_grpc {
                    server 127.0.0.1:{{serverPort}};
                    keepalive 64;
                    keepalive_requests 1000000;
                }
            {{upstreamTls}}
                server {
                    listen 127.0.0.1:{{clientPort}};
            {{locations}}
                }
                server {
                    {{h2Listen}}
            {{locations}}
                }
            """, cancellation);
        await LoadHost.WaitForPortAsync(client, h2Port, TimeSpan.FromSeconds(15));
        var server = await StartServerSideAsync(setup, dir, "nginx-server", serverPort, grpcPrefix, cancellation);
        await LoadHost.WaitForPortAsync(server, serverPort, TimeSpan.FromSeconds(15));
        var extra = 0;
        return new ProxyPair(client, server, new Uri($"http://127.0.0.1:{clientPort}{setup.HttpPath}"), new Uri($"http://127.0.0.1:{h2Port}{setup.HttpPath}"), null,
            new Uri($"https://127.0.0.1:{serverPort}{setup.HttpPath}"),
            async ct =>
            {
                var port = LoadHost.FreePort();
                var process = await StartServerSideAsync(setup, dir, $"nginx-server-{++extra}", port, grpcPrefix, ct);
                return (process, new Uri($"https://127.0.0.1:{port}{setup.HttpPath}"));
            });
    }

    private static Task<LoadProcess> StartServerSideAsync(PairSetup setup, string dir, string name, int port, string grpcPrefix, CancellationToken cancellation) =>
        StartSideAsync(setup, dir, name, $$"""
                upstream app {
                    server 127.0.0.1:{{setup.AppHttpPort}};
                    keepalive 64;
                    keepalive_requests 1000000;
                }
                upstream app_grpc {
                    server 127.0.0.1:{{setup.AppGrpcPort}};
                    keepalive 64;
                    keepalive_requests 1000000;
                }
                server {
                    listen 127.0.0.1:{{port}} ssl http2;
                    ssl_certificate {{dir}}/server.pem;
                    ssl_certificate_key {{dir}}/server.pem;
                    ssl_client_certificate {{dir}}/ca.pem;
                    ssl_verify_client on;
                    ssl_protocols TLSv1.3;
                    location / {
                        proxy_pass http://app;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_set_header x-ztm-client-identity $ssl_client_s_dn;
                    }
                    location {{grpcPrefix}} {
                        grpc_pass grpc://app_grpc;
                        grpc_set_header x-ztm-client-identity $ssl_client_s_dn;
                    }
                }
            """, cancellation);

    private static async Task<LoadProcess> StartSideAsync(PairSetup setup, string dir, string name, string http, CancellationToken cancellation)
    {
        var temp = Directory.CreateDirectory(Path.Combine(dir, name + "-temp")).FullName;
        var errorLog = Path.Combine(dir, name + ".error.log");
        var config = Path.Combine(dir, name + ".conf");
        await File.WriteAllTextAsync(config, $$"""
            pid {{dir}}/{{name}}.pid;
            error_log {{errorLog}} warn;
            events {
                worker_connections 4096;
            }
            http {
                access_log off;
                client_body_temp_path {{temp}}/body;
                proxy_temp_path {{temp}}/proxy;
                fastcgi_temp_path {{temp}}/fastcgi;
                uwsgi_temp_path {{temp}}/uwsgi;
                scgi_temp_path {{temp}}/scgi;
                keepalive_requests 1000000;
                keepalive_timeout 60s;
            {{http}}
            }

            """, cancellation);
        var process = LoadProcess.Start(name, "nginx", ["-c", config, "-p", dir, "-e", errorLog, "-g", "daemon off; master_process off;"], setup.Environment);
        process.Quiet();
        return process;
    }

    [GeneratedRegex(@"nginx/(\d+\.\d+(?:\.\d+)?)")]
    private static partial Regex VersionPattern();

    public static string Describe(Version? version) => version is null ? "nginx: not installed" : string.Create(CultureInfo.InvariantCulture, $"nginx {version}");
}
