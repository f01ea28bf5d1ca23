using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;
using static ZeroTrustMesh.Sidecar.ApiProtection.Redaction.RedactionAction;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

/// <summary>"Undeclared fields" mode: every member (and element) the response schema does not declare is removed.</summary>
public sealed class UndeclaredFieldsTests
{
    /// <summary>A users API in the shape of OWASP's vulnerable API apps (VAmPI, crAPI): the app leaks more than the schema declares.</summary>
    private const string Users = """
        {
          "$schema": "https://json-schema.org/draft/2020-12/schema",
          "type": "object",
          "properties": {
            "users": {"type": "array", "items": {"$ref": "#/$defs/User"}},
            "next": {"type": ["string", "null"]}
          },
          "$defs": {
            "User": {
              "type": "object",
              "required": ["username"],
              "properties": {
                "username": {"type": "string"},
                "email": {"type": "string", "format": "email"},
                "address": {"$ref": "#/$defs/Address"},
                "friends": {"type": "array", "items": {"$ref": "#/$defs/User"}},
                "metadata": {}
              }
            },
            "Address": {"type": "object", "properties": {"city": {"type": "string"}}}
          }
        }
        """;

    [Fact]
    public void Members_the_schema_does_not_declare_are_removed_nested_in_arrays_and_through_recursive_refs()
    {
        var redactor = Redact.Schema(Users);

        var result = Redact.Body(redactor, """
            {"users": [
               {"username": "ada", "password": "hunter2", "email": "a@x", "admin": true,
                "address": {"city": "London", "lat": 51.5},
                "friends": [{"username": "bob", "password": "pw", "friends": [{"username": "cy", "ssn": "1"}]}],
                "metadata": {"anything": {"goes": [1, 2]}}}
             ],
             "next": null, "debug": {"sql": "select *"}}
            """);

        Assert.Equal(
            """{"users":[{"username":"ada","email":"a@x","address":{"city":"London"},"friends":[{"username":"bob","friends":[{"username":"cy"}]}],"metadata":{"anything":{"goes":[1,2]}}}],"next":null}""",
            result.Json);
        Assert.Equal(6, result.Redacted); // password, admin, lat, bob's password, cy's ssn, debug
        Assert.Equal(result.Json, Redact.Json(redactor, result.Json)); // nothing left to remove
    }

    [Fact]
    public void AdditionalProperties_false_or_absent_removes_true_keeps_whole_and_a_schema_filters_the_others()
    {
        Assert.Equal("""{"a":1}""", Redact.Json(Redact.Schema("""{"properties": {"a": {}}, "additionalProperties": false}"""), """{"a": 1, "b": 2}"""));
        Assert.Equal("""{"a":1}""", Redact.Json(Redact.Schema("""{"properties": {"a": {}}}"""), """{"a": 1, "b": 2}"""));
        Assert.Equal("""{"a":1,"b":{"x":1,"y":2}}""", Redact.Json(Redact.Schema("""{"properties": {"a": {}}, "additionalProperties": true}"""), """{"a": 1, "b": {"x": 1, "y": 2}}"""));
        Assert.Equal(
            """{"a":1,"b":{"x":1},"c":{}}""",
            Redact.Json(Redact.Schema("""{"properties": {"a": {}}, "additionalProperties": {"properties": {"x": {}}}}"""), """{"a": 1, "b": {"x": 1, "y": 2}, "c": {"y": 3}}"""));
        Assert.Equal("{}", Redact.Json(Redact.Schema("""{"additionalProperties": false}"""), """{"a": 1}"""));
    }

    [Fact]
    public void PatternProperties_declare_the_members_they_match_unanchored_and_filter_them_with_their_schemas()
    {
        var redactor = Redact.Schema("""
            {"properties": {"id": {}},
             "patternProperties": {"^x-": {"properties": {"v": {}}}, "_at$": {"type": "string"}}}
            """);

        Assert.Equal(
            """{"id":1,"x-trace":{"v":1},"created_at":"2024","x-when_at":{"v":2}}""",
            Redact.Json(redactor, """{"id": 1, "x-trace": {"v": 1, "w": 2}, "secret": 3, "created_at": "2024", "x-when_at": {"v": 2, "w": 3}, "y-x-": 4}"""));
    }

    [Fact]
    public void A_member_declared_by_any_branch_of_allOf_anyOf_or_oneOf_stays_with_what_each_branch_declares_inside_it()
    {
        var redactor = Redact.Schema("""
            {"allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"b": {}}}],
             "anyOf": [{"properties": {"c": {"properties": {"x": {}}}}}, {"properties": {"c": {"properties": {"y": {}}}}}],
             "oneOf": [{"properties": {"d": {}}}, true],
             "$defs": {"Base": {"properties": {"a": {}}}}}
            """);

        Assert.Equal(
            """{"a":1,"b":2,"c":{"x":1,"y":2},"d":4}""",
            Redact.Json(redactor, """{"a": 1, "b": 2, "c": {"x": 1, "y": 2, "z": 3}, "d": 4, "e": 5}"""));
    }

    [Fact]
    public void Conditional_and_dependent_schemas_declare_members_too_and_unevaluatedProperties_covers_the_rest()
    {
        var redactor = Redact.Schema("""
            {"properties": {"kind": {}},
             "if": {"properties": {"kind": {"const": "card"}}},
             "then": {"properties": {"last4": {}}},
             "else": {"properties": {"iban": {}}},
             "dependentSchemas": {"kind": {"properties": {"note": {}}}},
             "unevaluatedProperties": {"properties": {"keep": {}}}}
            """);

        Assert.Equal(
            """{"kind":"card","last4":"1234","iban":"x","note":"n","extra":{"keep":1}}""",
            Redact.Json(redactor, """{"kind": "card", "last4": "1234", "iban": "x", "note": "n", "extra": {"keep": 1, "drop": 2}}"""));
        Assert.Equal("""{"a":1}""", Redact.Json(Redact.Schema("""{"properties": {"a": {}}, "unevaluatedProperties": false}"""), """{"a": 1, "b": 2}"""));
    }

    [Fact]
    public void Arrays_keep_the_elements_prefixItems_and_items_declare()
    {
        var tuple = Redact.Schema("""{"prefixItems": [{"properties": {"a": {}}}, {"type": "string"}], "items": {"properties": {"b": {}}}}""");
        Assert.Equal("""[{"a":1},"s",{"b":2},{"b":3}]""", Redact.Json(tuple, """[{"a": 1, "z": 0}, "s", {"b": 2, "z": 0}, {"b": 3}]"""));

        var closed = Redact.Schema("""{"prefixItems": [{}, {}]}""");
        var result = Redact.Body(closed, """[1, {"x": 2}, 3, [4]]""");
        Assert.Equal("""[1,{"x":2}]""", result.Json);
        Assert.Equal(2, result.Redacted);

        Assert.Equal("[]", Redact.Json(Redact.Schema("""{"items": false}"""), "[1, 2]"));
        Assert.Equal("""[{"a":[1,{"b":2}]}]""", Redact.Json(Redact.Schema("""{"items": {"properties": {"a": {"items": true}}}}"""), """[{"a": [1, {"b": 2}], "c": 3}]"""));
    }

    [Fact]
    public void A_member_whose_schema_is_false_is_removed_even_when_declared()
    {
        var redactor = Redact.Schema("""
            {"properties": {"id": {}, "password": false, "pin": {"$ref": "#/$defs/Never"}, "both": {"allOf": [{}, false]}},
             "$defs": {"Never": false}}
            """);

        Assert.Equal("""{"id":1}""", Redact.Json(redactor, """{"id": 1, "password": "x", "pin": 1, "both": 2}"""));
    }

    [Fact]
    public void A_writeOnly_member_is_declared_for_requests_only_and_removed_from_responses()
    {
        var redactor = Redact.Schema("""
            {"properties": {"username": {}, "password": {"type": "string", "writeOnly": true}, "pin": {"$ref": "#/$defs/Secret"},
                            "note": {"writeOnly": false}},
             "$defs": {"Secret": {"type": "string", "writeOnly": true}}}
            """);

        Assert.Equal("""{"username":"ada","note":"n"}""", Redact.Json(redactor, """{"username": "ada", "password": "x", "pin": "1", "note": "n"}"""));
    }

    [Fact]
    public void A_value_whose_schemas_declare_no_members_is_free_form_and_kept_whole()
    {
        foreach (var schema in new[] { "true", "{}", """{"type": "object"}""", """{"description": "anything", "$ref": "#/$defs/Any", "$defs": {"Any": {}}}""" })
        {
            var redactor = Redact.Schema(schema);
            Assert.Null(redactor.Schema);
            Assert.Equal("""{"a":{"b":[1,{"c":2}]}}""", Redact.Json(redactor, """{"a": {"b": [1, {"c": 2}]}}"""));
        }
    }

    [Fact]
    public void A_value_of_another_type_than_declared_is_filtered_by_what_applies_to_it()
    {
        // The schema says object; the app sent an array: its elements are not declared by anything, so free-form.
        var redactor = Redact.Schema("""{"properties": {"a": {"properties": {"x": {}}}}}""");

        Assert.Equal("""{"a":[{"y":1}]}""", Redact.Json(redactor, """{"a": [{"y": 1}]}"""));
        Assert.Equal("""{"a":"text"}""", Redact.Json(redactor, """{"a": "text"}"""));
    }

    [Fact]
    public void Rules_apply_together_with_the_schema_and_removal_wins()
    {
        var redactor = Redact.Schema(Users, ("/users/*/email", Mask), ("/users/*/address", Remove), ("/next", Mask), ("/debug", Mask));

        var result = Redact.Body(redactor, """{"users": [{"username": "a", "email": "a@x", "address": {"city": "c"}, "password": "p"}], "next": "n", "debug": 1}""");

        Assert.Equal("""{"users":[{"username":"a","email":"****"}],"next":"****"}""", result.Json);
        Assert.Equal(5, result.Redacted);
    }

    [Fact]
    public void Member_names_with_escapes_are_matched_unescaped()
    {
        var redactor = Redact.Schema("""{"properties": {"a/b": {}, "m~n": {}, "é": {}, "\"": {}}}""");

        Assert.Equal("""{"a\/b":1,"m~n":2,"\u00e9":3,"\"":4}""" /* names as the app escaped them */, Redact.Json(redactor, """{"a\/b": 1, "m~n": 2, "\u00e9": 3, "\"": 4, "\u0078": 5}"""));
    }

    [Theory]
    [InlineData("""{"$ref": "other.json#/User"}""", "$ref 'other.json#/User' is not a local reference")]
    [InlineData("""{"properties": {"a": {"$ref": "#/$defs/Missing"}}}""", "#/properties/a/$ref: $ref '#/$defs/Missing' does not resolve")]
    [InlineData("""{"items": [{}, {}]}""", "use prefixItems")]
    [InlineData("""{"patternProperties": {"(": {}}}""", "pattern '(' is not a regular expression")]
    [InlineData("""{"properties": {"a": 3}}""", "#/properties/a: a schema is an object or a boolean, not number")]
    [InlineData("""{"$dynamicRef": "#meta"}""", "$dynamicRef is not supported")]
    [InlineData("""{"allOf": {}}""", "#/allOf: expected an array of schemas")]
    [InlineData("""{"properties": """, "not JSON")]
    [InlineData("false", "allows no value at all")]
    public void A_schema_the_mode_cannot_use_is_refused_with_its_location(string schema, string reason)
    {
        var error = Assert.Throws<ArgumentException>(() => Redact.Schema(schema));

        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_problem_of_a_schema_and_of_the_pointers_is_reported_at_once()
    {
        var error = Assert.Throws<ArgumentException>(() => ResponseRedactor.Compile(
            [new RedactionRule("nope", Remove)],
            """{"properties": {"a": {"$ref": "#/x"}, "b": {"$ref": "http://x/y"}}}"""));

        Assert.Contains("'nope' does not start with '/'", error.Message, StringComparison.Ordinal);
        Assert.Contains("#/properties/a/$ref", error.Message, StringComparison.Ordinal);
        Assert.Contains("#/properties/b/$ref", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_ref_may_point_anywhere_in_the_document_with_escaped_and_percent_encoded_segments()
    {
        var redactor = Redact.Schema("""
            {"properties": {"a": {"$ref": "#/components/schemas/A~1B"}, "b": {"$ref": "#/components/schemas/with%20space"}, "self": {"$ref": "#"}},
             "components": {"schemas": {"A/B": {"properties": {"x": {}}}, "with space": {"properties": {"y": {}}}}}}
            """);

        Assert.Equal(
            """{"a":{"x":1},"b":{"y":2},"self":{"a":{"x":3}}}""",
            Redact.Json(redactor, """{"a": {"x": 1, "z": 0}, "b": {"y": 2, "z": 0}, "self": {"a": {"x": 3, "z": 0}, "z": 0}, "z": 0}"""));
    }

    [Fact]
    public void A_pattern_that_needs_backtracking_is_still_usable()
    {
        // Lookarounds are outside the non-backtracking engine; such a pattern runs with a time limit instead.
        var redactor = Redact.Schema("""{"patternProperties": {"^(?!internal_)": {}}}""");

        Assert.Equal("""{"name":1}""", Redact.Json(redactor, """{"name": 1, "internal_id": 2}"""));
    }
}
