using System.Collections.Frozen;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace ZeroTrustMesh.Chart.Tests.Infrastructure;

/// <summary>
/// KubernetesClient's generated models, read strictly: a copy of its own serializer options (its converters for
/// quantities, int-or-string, dates) with unmapped members disallowed, so a misspelled or misplaced field anywhere in an
/// object fails — as the API server's strict field validation would refuse it. The model of an object is the type
/// whose <see cref="KubernetesEntityAttribute"/> names its apiVersion and kind.
/// </summary>
internal static class KubernetesModels
{
    public static JsonSerializerOptions StrictOptions { get; } = CreateStrictOptions();

    private static readonly FrozenDictionary<(string ApiVersion, string Kind), Type> Types = typeof(V1Pod).Assembly.GetTypes()
        .Select(t => (Type: t, Entity: t.GetCustomAttribute<KubernetesEntityAttribute>()))
        .Where(e => e.Entity is { Kind.Length: > 0 } && typeof(IKubernetesObject).IsAssignableFrom(e.Type))
        .ToFrozenDictionary(
            e => (string.IsNullOrEmpty(e.Entity!.Group) ? e.Entity.ApiVersion : $"{e.Entity.Group}/{e.Entity.ApiVersion}", e.Entity.Kind),
            e => e.Type);

    private static JsonSerializerOptions CreateStrictOptions()
    {
        JsonSerializerOptions? library = null;
        KubernetesJson.AddJsonOptions(options => library = options); // hands out the library's instance; nothing is changed
        return new JsonSerializerOptions(library ?? throw new InvalidOperationException("KubernetesJson gave no options"))
        {
            UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        };
    }

    public static bool TryGetModel(string apiVersion, string kind, out Type type) => Types.TryGetValue((apiVersion, kind), out type!);

    /// <summary>The object as its model; throws naming the object and the field when any field is unknown or mistyped.</summary>
    public static object Deserialize(RenderedObject rendered)
    {
        if (!TryGetModel(rendered.ApiVersion, rendered.Kind, out var type))
        {
            throw new InvalidOperationException($"{rendered}: KubernetesClient has no model for {rendered.ApiVersion} {rendered.Kind}");
        }
        return Deserialize(rendered.Json, type, rendered.ToString());
    }

    public static T Deserialize<T>(JsonNode json, string what) => (T)Deserialize(json, typeof(T), what);

    private static object Deserialize(JsonNode json, Type type, string what)
    {
        try
        {
            return JsonSerializer.Deserialize(json, type, StrictOptions) ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"{what} does not fit {type.Name}: {e.Message}", e);
        }
    }

    /// <summary>The model written back with the library's own options, as a client would send it.</summary>
    public static JsonNode Serialize(object model) => JsonNode.Parse(KubernetesJson.Serialize(model))!;
}
