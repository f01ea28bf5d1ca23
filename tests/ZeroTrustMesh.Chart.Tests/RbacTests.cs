using k8s.Models;
using ZeroTrustMesh.Chart.Tests.Infrastructure;

namespace ZeroTrustMesh.Chart.Tests;

public sealed class RbacTests
{
    /// <summary>One line per rule: "group resource[,resource] verb[,verb] names" — what the test compares.</summary>
    private static string[] Describe(IEnumerable<V1PolicyRule> rules) =>
    [
        .. rules.Select(r => $"{string.Join(',', r.ApiGroups)}|{string.Join(',', r.Resources)}|{string.Join(',', r.Verbs)}|{string.Join(',', r.ResourceNames ?? [])}"),
    ];

    [HelmFact]
    public async Task The_control_plane_may_only_patch_its_webhook_configuration_keep_ztm_ca_root_current_review_tokens_follow_the_registry_and_read_policy()
    {
        var chart = await Renders.Default;
        var role = chart.Get<V1ClusterRole>("ClusterRole", "ztm-controlplane");
        Assert.Equal(
        [
            "admissionregistration.k8s.io|mutatingwebhookconfigurations|get,watch,patch|ztm-sidecar-injector",
            "|configmaps|create|",
            "|configmaps|get,list,watch,update,patch|ztm-ca-root",
            "|namespaces|get,list,watch|",
            "authentication.k8s.io|tokenreviews|create|", // attestation (--kubernetes): a sidecar's token
            "|pods|get,list,watch|",                       // the pod a token is bound to; the registry's pods
            "|services|list,watch|",                       // the registry: Services
            "discovery.k8s.io|endpointslices|list,watch|", // and their endpoints
            "security.ztm.dev|authorizationpolicies,requestauthentications,peerauthentications,ratelimitpolicies,apispecs,anomalypolicies|list,watch|", // policy
            "security.ztm.dev|authorizationpolicies/status,requestauthentications/status,peerauthentications/status,ratelimitpolicies/status,apispecs/status,anomalypolicies/status|update,patch|", // Accepted
            "|configmaps|list,watch|",                     // ApiSpec openapi.configMapRef
        ], Describe(role.Rules));

        var binding = chart.Get<V1ClusterRoleBinding>("ClusterRoleBinding", "ztm-controlplane");
        Assert.Equal(("ClusterRole", "ztm-controlplane"), (binding.RoleRef.Kind, binding.RoleRef.Name));
        var subject = Assert.Single(binding.Subjects);
        Assert.Equal(("ServiceAccount", "ztm-controlplane", "ztm-system"), (subject.Kind, subject.Name, subject.NamespaceProperty));
        Assert.Equal("ztm-controlplane", chart.Get<V1Deployment>("Deployment", "ztm-controlplane").Spec.Template.Spec.ServiceAccountName);
    }

    [HelmFact]
    public async Task The_lease_the_ca_secret_and_the_shared_configmaps_are_reached_in_the_release_namespace_only()
    {
        var chart = await Renders.Default;
        var cluster = Describe(chart.Get<V1ClusterRole>("ClusterRole", "ztm-controlplane").Rules);
        Assert.DoesNotContain(cluster, r => r.Contains("secrets", StringComparison.Ordinal) || r.Contains("leases", StringComparison.Ordinal));

        var role = chart.Get<V1Role>("Role", "ztm-controlplane");
        Assert.Equal("ztm-system", role.Metadata.NamespaceProperty);
        Assert.Equal(
        [
            "coordination.k8s.io|leases|create|",
            "coordination.k8s.io|leases|get,watch,update,patch|ztm-controlplane-leader", // leader election
            "|secrets|create|",
            "|secrets|get,update|ztm-ca",                                                // the CA: created once, then read; the rotation record
            "|configmaps|get,list,watch,update,patch|ztm-revocations,ztm-config-versions", // shared revocations and versions
            "|configmaps|get,list,update|",                                                // replicas' reports (ztm-sidecars-<pod>, ztm-anomaly-counts-<pod>), checkpoints, anomaly state
        ], Describe(role.Rules));
        var binding = chart.Get<V1RoleBinding>("RoleBinding", "ztm-controlplane");
        Assert.Equal(("Role", "ztm-controlplane"), (binding.RoleRef.Kind, binding.RoleRef.Name));
        Assert.Equal(("ServiceAccount", "ztm-controlplane", "ztm-system"), (binding.Subjects.Single().Kind, binding.Subjects.Single().Name, binding.Subjects.Single().NamespaceProperty));

        // Another CA Secret name is the one the control plane may read.
        Assert.Contains("|secrets|get,update|mesh-ca", Describe((await Renders.AllFeatures).Get<V1Role>("Role", "ztm-controlplane").Rules));
    }

    [HelmTheory]
    [MemberData(nameof(Variants))]
    public async Task No_rule_uses_a_wildcard_or_grants_delete_escalate_bind_or_impersonate(string variant)
    {
        var chart = await Renders.Get(variant);
        var rules = chart.OfKind("ClusterRole").Select(o => KubernetesModels.Deserialize<V1ClusterRole>(o.Json, o.ToString()).Rules)
            .Concat(chart.OfKind("Role").Select(o => KubernetesModels.Deserialize<V1Role>(o.Json, o.ToString()).Rules))
            .SelectMany(r => r).ToList();
        Assert.NotEmpty(rules);
        foreach (var rule in rules)
        {
            Assert.DoesNotContain("*", rule.Verbs.Concat(rule.Resources).Concat(rule.ApiGroups));
            Assert.Empty(rule.Verbs.Intersect(["delete", "deletecollection", "escalate", "bind", "impersonate"]));
            Assert.Null(rule.NonResourceURLs);
        }
    }

    public static TheoryData<string> Variants => Renders.Variants;
}
