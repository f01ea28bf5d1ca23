using System.Text;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;
using static ZeroTrustMesh.Sidecar.ApiProtection.Redaction.RedactionAction;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection.Redaction;

/// <summary>Redaction by JSON Pointer rules: what Remove and Mask write, wildcards, escapes, and values kept byte for byte.</summary>
public sealed class RedactionRuleTests
{
    [Fact]
    public void Remove_leaves_the_member_out_and_Mask_replaces_a_value_of_any_type_with_four_stars()
    {
        var redactor = Redact.Rules(("/password", Remove), ("/token", Mask), ("/pin", Mask), ("/card", Mask), ("/roles", Mask), ("/none", Mask), ("/ok", Mask));

        var result = Redact.Body(redactor, """
            {"id": 7, "password": "hunter2", "token": "abc", "pin": 1234, "card": {"number": "4111"}, "roles": ["a", "b"], "none": null, "ok": true, "name": "ada"}
            """);

        Assert.Equal("""{"id":7,"token":"****","pin":"****","card":"****","roles":"****","none":"****","ok":"****","name":"ada"}""", result.Json);
        Assert.Equal(7, result.Redacted);
        Assert.False(result.Invalid);
    }

    [Fact]
    public void A_wildcard_matches_every_element_of_an_array_and_every_member_of_an_object()
    {
        var redactor = Redact.Rules(("/users/*/ssn", Remove), ("/*/token", Mask));

        Assert.Equal(
            """{"users":[{"name":"a"},{"name":"b"},{"name":"c"},7],"admin":{"token":"****"},"list":[{"token":"t"}]}""",
            Redact.Json(redactor, """
                {"users": [{"name": "a", "ssn": "1"}, {"ssn": {"deep": 1}, "name": "b"}, {"name": "c"}, 7],
                 "admin": {"token": "t"}, "list": [{"token": "t"}]}
                """));
        Assert.Equal("""{"users":{"ada":{"name":"a"},"bob":{}}}""", Redact.Json(redactor, """{"users": {"ada": {"name": "a", "ssn": "1"}, "bob": {"ssn": "2"}}}"""));
    }

    [Fact]
    public void Wildcards_chain_and_an_index_segment_names_one_element_or_a_member_with_that_name()
    {
        var redactor = Redact.Rules(("/*/*/secret", Remove), ("/orders/1/card", Mask));

        Assert.Equal(
            """{"a":{"b":{"keep":1}},"orders":[{"card":"1"},{"card":"****"},{"card":"3"}],"o":{"1":{"card":"x"}}}""",
            Redact.Json(redactor, """
                {"a": {"b": {"secret": 1, "keep": 1}}, "orders": [{"card": "1"}, {"card": "2"}, {"card": "3"}], "o": {"1": {"card": "x"}}}
                """));
        var byName = Redact.Rules(("/o/1/card", Mask));
        Assert.Equal("""{"o":{"1":{"card":"****"},"01":{"card":"x"}}}""", Redact.Json(byName, """{"o": {"1": {"card": "x"}, "01": {"card": "x"}}}"""));
    }

    [Fact]
    public void Pointers_unescape_tilde_and_slash_and_member_names_match_whatever_their_JSON_escapes()
    {
        var redactor = Redact.Rules(("/a~1b", Remove), ("/m~0n", Mask), ("/~01", Remove), ("/password", Remove), ("/café", Mask));

        Assert.Equal(
            """{"a":1,"b":2,"m~n":"****","~1x":0,"caf\u00e9":"****","\"q\"":1}""" /* names as the app escaped them */,
            Redact.Json(redactor, """{"a": 1, "a/b": 1, "b": 2, "m~n": 3, "~1": 4, "~1x": 0, "pass\u0077ord": "x", "caf\u00e9": 1, "\"q\"": 1}"""));
    }

    [Fact]
    public void Strings_and_numbers_are_written_exactly_as_the_app_wrote_them()
    {
        var redactor = Redact.Rules(("/drop", Remove));
        const string kept = """{"s":"tab\there \"quoted\" \\ \/ \u00e9 é 日本 😀 \ud83d\ude00 <&'+>","n":[0,-0,1.0,1.50,1e400,-1E-7,123456789012345678901234567890,0.1e+2],"b":[true,false,null],"e":{},"a":[],"nested":[[[]],{"x":{}}]}""";

        var input = "{\"drop\": [1, {\"x\": \"y\"}], " + kept[1..];

        Assert.Equal(Encoding.UTF8.GetBytes(kept), Encoding.UTF8.GetBytes(Redact.Json(redactor, input)));
    }

    [Fact]
    public void Whitespace_is_kept_as_the_app_wrote_it_except_after_the_body_and_the_body_is_otherwise_unchanged_without_a_match()
    {
        var redactor = Redact.Rules(("/nothing/here", Remove), ("/gone", Remove), ("/list/1", Remove));

        Assert.Equal(
            " {\n  \"a\" : [ 1 ,2,\t{ \"b\":\"c d\" } ],\r\n \"e\": null }",
            Redact.Written(redactor, Encoding.UTF8.GetBytes(" {\n  \"a\" : [ 1 ,2,\t{ \"b\":\"c d\" } ],\r\n \"e\": null }\n ")).Json);
        // A removed member or element takes the comma before it (or after it, when it comes first) and the whitespace in between.
        Assert.Equal(
            "{\n  \"a\": 1,\n  \"list\": [0 , 2]\n}",
            Redact.Written(redactor, Encoding.UTF8.GetBytes("{\n  \"gone\": {\"x\": 1},\n  \"a\": 1,\n  \"list\": [0 , 1 , 2]\n}")).Json);
        Assert.Equal(0, Redact.Body(redactor, """{"nothing": {"there": 1}}""").Redacted);
    }

    [Fact]
    public void A_top_level_array_or_scalar_body_is_redacted_too()
    {
        var redactor = Redact.Rules(("/*/password", Remove), ("/1", Mask));

        Assert.Equal("""[{"id":1},"****",{"id":3}]""", Redact.Json(redactor, """[{"id": 1, "password": "a"}, {"id": 2}, {"id": 3, "password": "c"}]"""));
        Assert.Equal("\"just a string\"", Redact.Json(redactor, "\"just a string\""));
        Assert.Equal("42", Redact.Json(redactor, "42"));
    }

    [Fact]
    public void Remove_wins_over_Mask_and_a_rule_inside_a_redacted_value_counts_once()
    {
        var redactor = Redact.Rules(("/a", Mask), ("/a", Remove), ("/b", Mask), ("/b/c", Remove), ("/*", Mask), ("/d", Remove));

        var result = Redact.Body(redactor, """{"a": 1, "b": {"c": 1, "e": 2}, "d": 3, "f": 4}""");

        Assert.Equal("""{"b":"****","f":"****"}""", result.Json);
        Assert.Equal(4, result.Redacted);
    }

    [Theory]
    [InlineData("password", "'password' does not start with '/'")]
    [InlineData("", "'' names the whole body")]
    [InlineData("/a~2b", "'~' must be followed by 0")]
    [InlineData("/a~", "'~' must be followed by 0")]
    public void A_pointer_that_is_not_a_JSON_Pointer_to_a_member_is_refused_with_the_reason(string bad, string reason)
    {
        var error = Assert.Throws<ArgumentException>(() => Redact.Rules(("/fine", Remove), (bad, Remove), ("/also/bad~", Mask)));

        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
        Assert.Contains("'/also/bad~'", error.Message, StringComparison.Ordinal); // every bad pointer, not just the first
    }

    [Fact]
    public void Without_rules_or_schema_the_body_passes_with_nothing_redacted()
    {
        var redactor = ResponseRedactor.Compile([], null);

        Assert.Null(redactor.Rules);
        Assert.Null(redactor.Schema);
        Assert.Equal("""{"password":"x"}""", Redact.Json(redactor, """{"password": "x"}"""));
    }
}
