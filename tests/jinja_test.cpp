// Chat-template interpreter tests: every real template in shared/chat-templates rendered with every
// conversation and compared byte for byte with Jinja2's output, plus focused interpreter cases.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/chat/template.h"
#include "core/chat/value.h"

#ifndef PAGODA_CHAT_TEMPLATES_DIR
#define PAGODA_CHAT_TEMPLATES_DIR "../shared/chat-templates"
#endif

namespace pagoda {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// render.py pins strftime_now to 2024-07-26 12:00:00.
ChatRenderOptions fixture_options() {
  ChatRenderOptions o;
  std::tm t{};
  t.tm_year = 124;
  t.tm_mon = 6;
  t.tm_mday = 26;
  t.tm_hour = 12;
  t.tm_wday = 5;
  t.tm_yday = 207;
  o.now = t;
  return o;
}

// The first place two strings differ, with some context, for a readable failure.
std::string first_difference(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  const size_t from = i > 40 ? i - 40 : 0;
  return "at byte " + std::to_string(i) + "\n  want: " + ojson(want.substr(from, 120)).dump() +
         "\n  got:  " + ojson(got.substr(from, 120)).dump();
}

// Each case's expected output is what Jinja2 3.1 renders (render.py's environment).
struct Case {
  const char* name;
  const char* tmpl;
  const char* vars;
  const char* want;
};
const Case kCases[] = {
    {"ws_minus", "a  {%- if true -%}  b  {%- endif -%}  c", R"J({})J", "abc"},
    {"trim_lstrip", "x\n    {% if true %}\n    y\n    {% endif %}\nz", R"J({})J", "x\n    y\nz"},
    {"lstrip_plus", "x\n    {%+ if true %}y{% endif %}", R"J({})J", "x\n    y"},
    {"var_no_trim", "{{ 'a' }}\nb", R"J({})J", "a\nb"},
    {"comment", "a\n  {# c #}\nb", R"J({})J", "a\nb"},
    {"loop_vars", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.previtem }}|{{ loop.nextitem }};{% endfor %}", R"J({"xs": ["a", "b", "c"]})J", "10TrueFalse33|b;21FalseFalse32a|c;32FalseTrue31b|;"},
    {"loop_else_filter", "{% for x in xs if x > 1 %}{{ x }}{{ loop.length }},{% else %}none{% endfor %}|{% for x in [] %}{% else %}empty{% endfor %}", R"J({"xs": [1, 2, 3]})J", "22,32,|empty"},
    {"break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", R"J({})J", "0134"},
    {"loop_scope", "{% set y = 1 %}{% for x in [1,2] %}{% set y = x * 10 %}{{ y }}{% endfor %}|{{ y }}", R"J({})J", "1020|1"},
    {"namespace", "{% set ns = namespace(n=0, s='') %}{% for x in [1,2,3] %}{% set ns.n = ns.n + x %}{% set ns.s = ns.s ~ x %}{% endfor %}{{ ns.n }}-{{ ns.s }}", R"J({})J", "6-123"},
    {"macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }} {{ greet(name='C') }}", R"J({})J", "Hi A! Hi B? Hi C!"},
    {"call_block", "{% macro box(t) %}[{{ t }}:{{ caller() }}]{% endmacro %}{% call box('x') %}inner{% endcall %}", R"J({})J", "[x:inner]"},
    {"filter_block", "{% filter upper %}abc{{ 'd' }}{% endfilter %}", R"J({})J", "ABCD"},
    {"set_block", "{% set s %}  hi {{ 1 + 2 }} {% endset %}[{{ s }}][{{ s|trim }}]", R"J({})J", "[  hi 3 ][hi 3]"},
    {"slicing", "{{ xs[1:] }}{{ xs[:-1] }}{{ xs[::-1] }}{{ xs[::2] }}{{ 'héllo'[1:3] }}{{ 'abc'[::-1] }}{{ xs[-1] }}", R"J({"xs": [1, 2, 3, 4]})J", "[2, 3, 4][1, 2, 3][4, 3, 2, 1][1, 3]élcba4"},
    {"tojson_opts", "{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(separators=(',', ':')) }}|{{ d|tojson(sort_keys=true) }}", R"J({"d": {"z": "é\"\n", "a": [1, 2.5, true, null], "m": {}}})J", "{\"z\": \"é\\\"\\n\", \"a\": [1, 2.5, true, null], \"m\": {}}|{\n  \"z\": \"é\\\"\\n\",\n  \"a\": [\n    1,\n    2.5,\n    true,\n    null\n  ],\n  \"m\": {}\n}|{\"z\":\"é\\\"\\n\",\"a\":[1,2.5,true,null],\"m\":{}}|{\"a\": [1, 2.5, true, null], \"m\": {}, \"z\": \"é\\\"\\n\"}"},
    {"tests", "{{ x is defined }}{{ y is defined }}{{ x is string }}{{ d is mapping }}{{ xs is iterable }}{{ 3 is number }}{{ none is none }}{{ 4 is divisibleby 2 }}{{ 'a' is not string }}", R"J({"x": "s", "d": {}, "xs": []})J", "TrueFalseTrueTrueTrueTrueTrueTrueFalse"},
    {"in_ops", "{{ 'b' in 'abc' }}{{ 2 in [1,2] }}{{ 'k' in d }}{{ 'z' not in d }}", R"J({"d": {"k": 1}})J", "TrueTrueTrueTrue"},
    {"arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ 'a' ~ 1 ~ none }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 'ab' * 3 }}", R"J({})J", "3 -4 1 2 3.5 1024 7 a1None 0.30000000000000004 1e+20 ababab"},
    {"cond_expr", "{{ 'y' if x else 'n' }}{{ 'y' if not x }}|{{ x and 'a' or 'b' }}", R"J({"x": false})J", "ny|b"},
    {"filters", "{{ '  a b  '|trim }}|{{ xs|join(', ') }}|{{ xs|length }}|{{ d|items|list }}|{{ 'hello world'|title }}|{{ 'hELLo'|capitalize }}|{{ 'a-b'|replace('-', '+') }}|{{ u|default('dflt') }}|{{ xs|first }}{{ xs|last }}|{{ '3'|int + 1 }}|{{ 2.567|round(2) }}|{{ -3|abs }}|{{ [3,1,2]|sort }}|{{ ['a','A','b']|unique|list }}|{{ d|dictsort }}|{{ 'one two three'|wordcount }}", R"J({"xs": ["x", "y"], "d": {"b": 2, "a": 1}})J", "a b|x, y|2|[('b', 2), ('a', 1)]|Hello World|Hello|a+b|dflt|xy|4|2.57|3|[1, 2, 3]|['a', 'b']|[('a', 1), ('b', 2)]|3"},
    {"selectattr_map", "{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }}|{{ ms|rejectattr('role', 'equalto', 'user')|list|length }}|{{ ms|map(attribute='role')|list }}", R"J({"ms": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}, {"role": "user", "content": "c"}]})J", "a,c|1|['user', 'bot', 'user']"},
    {"indent", "{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, first=true) }}|{{ 'a\n\nb'|indent(2, blank=true) }}", R"J({})J", "a\n  b\n\n  c|  a\n  b|a\n  \n  b"},
    {"string_methods", "{{ ' x '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}|{{ 'abcabc'.find('c') }}|{{ '{} and {}'.format(1, 'b') }}|{{ 'a-b-c'.replace('-', '', 1) }}", R"J({})J", "x|axx|['a', 'b', '', 'c']|['a', 'b']|TrueTrue|HELLOhello|2|1 and b|ab-c"},
    {"dict_methods", "{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 5) }}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.keys()|list }}{{ d.values()|list }}|{{ d.a }}{{ d['b'] }}", R"J({"d": {"a": 1, "b": 2}})J", "1None5|a=1;b=2;|['a', 'b'][1, 2]|12"},
    {"repr", "{{ xs }}|{{ d }}|{{ t }}|{{ true }}{{ none }}|{{ 1.0 }}{{ 10 / 4 }}", R"J({"xs": ["it's", "a\"b", 1, null, true], "d": {"k": [1, 2.0]}, "t": 1})J", "[\"it's\", 'a\"b', 1, None, True]|{'k': [1, 2.0]}|1|TrueNone|1.02.5"},
    {"undefined", "[{{ u }}][{{ u|length }}][{{ u is defined }}][{{ d.missing }}][{{ d.missing is defined }}][{% for x in u %}x{% endfor %}][{{ u ~ 'z' }}]", R"J({"d": {}})J", "[][0][False][][False][][z]"},
    {"strftime", "{{ strftime_now('%d %B %Y') }}", R"J({})J", "26 July 2024"},
    {"generation", "a{% generation %}b{{ 1 }}{% endgeneration %}c", R"J({})J", "ab1c"},
    {"markup", "{{ ('<b>'|safe + '<i>') }}|{{ '<x>' ~ ('a'|safe) }}", R"J({})J", "<b>&lt;i&gt;|<x>a"},
    {"raw", "{% raw %}{{ not parsed }}{% endraw %}", R"J({})J", "{{ not parsed }}"},
};

TEST(Jinja, RendersLikeJinja2) {
  for (const auto& c : kCases) {
    auto t = ChatTemplate::parse(c.tmpl);
    ASSERT_TRUE(t.ok()) << c.name << ": " << t.error();
    auto got = t->render(ojson::parse(c.vars), fixture_options());
    ASSERT_TRUE(got.ok()) << c.name << ": " << got.error();
    EXPECT_EQ(*got, c.want) << c.name;
  }
}

Result<std::string> render_str(const std::string& tmpl, const char* vars = "{}", ChatRenderOptions o = {}) {
  auto t = ChatTemplate::parse(tmpl);
  if (!t) return t.take_error();
  return t->render(ojson::parse(vars), o);
}

TEST(Jinja, SyntaxErrorNamesTheLine) {
  auto r = render_str("line one\n{% if x %}\n{{ 1 + }}\n{% endif %}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("line 3"), std::string::npos) << r.error();
  r = render_str("a\n\n{% for x in xs %}never closed");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("endfor"), std::string::npos) << r.error();
  r = render_str("{% frobnicate %}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("unknown tag 'frobnicate'"), std::string::npos) << r.error();
  r = render_str("{{ 'unterminated }}");
  EXPECT_FALSE(r.ok());
}

TEST(Jinja, RuntimeErrorNamesTheLine) {
  auto r = render_str("a\nb\n{{ raise_exception('System role not supported') }}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "template line 3: System role not supported");
  r = render_str("{% for m in messages %}\n\n{{ m.content.x.y }}{% endfor %}", R"({"messages": [{"role": "user"}]})");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("line 3"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("has no attribute 'content'"), std::string::npos) << r.error();
  r = render_str("\n{{ 'a' + {} }}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "template line 2: can only concatenate str (not \"dict\") to str");
  r = render_str("{{ x|nosuchfilter }}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("no filter named 'nosuchfilter'"), std::string::npos);
}

TEST(Jinja, SandboxRefusesMutation) {
  auto r = render_str("{% set xs = [] %}{% set _ = xs.append(1) %}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("unsafe"), std::string::npos) << r.error();
}

TEST(Jinja, GeneratorsAreNotJsonOrSized) {
  EXPECT_FALSE(render_str("{{ [1]|map('string')|tojson }}").ok());
  EXPECT_FALSE(render_str("{{ [1]|select|length }}").ok());
  EXPECT_EQ(*render_str("{{ [1]|select|list|length }}"), "1");
  EXPECT_EQ(*render_str("{{ 'yes' if ([]|select) }}"), "yes");  // a generator is always truthy
}

TEST(Jinja, RecursionIsBoundedNotAStackOverflow) {
  auto r = render_str("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("nested deeper"), std::string::npos) << r.error();
  std::string deep(5000, '(');
  EXPECT_FALSE(render_str("{{ " + deep + "1" + std::string(5000, ')') + " }}").ok());
  std::string nested;
  for (int i = 0; i < 1000; ++i) nested += "{% if true %}";
  EXPECT_FALSE(render_str(nested).ok());
}

TEST(Jinja, OutputAndWorkAreBounded) {
  ChatRenderOptions o;
  o.limits.max_output = 1000;
  auto r = render_str("{% for i in range(100) %}0123456789abcdef{% endfor %}", "{}", o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("exceeds 1000 bytes"), std::string::npos) << r.error();
  o = {};
  o.limits.max_steps = 10000;
  r = render_str("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "{}", o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("steps"), std::string::npos) << r.error();
  EXPECT_FALSE(render_str("{{ 'x' * 1000000000000 }}").ok());
  EXPECT_FALSE(render_str("{{ 9223372036854775807 + 1 }}").ok());
}

// A GGUF's chat template is untrusted: values that double in a loop, or a namespace that holds
// itself, must end in an error within the work budget, not in exhausted memory, a hang or a stack
// overflow (each of these took minutes and gigabytes, or crashed, before the budget).
TEST(Jinja, HostileTemplatesEndInAnErrorNotInExhaustion) {
  const char* hostile[] = {
      // doubling a list, a string, a dict and a nested list, through +, ~, *, literals and filters
      "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = ns.x + ns.x %}{% endfor %}",
      "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = ns.x * 2 %}{% endfor %}",
      "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
      "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s|replace('a', ns.s) %}{% endfor %}",
      "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = '%s%s'|format(ns.s, ns.s) %}{% endfor %}",
      "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = '{0}{0}'.format(ns.s) %}{% endfor %}",
      // sharing: small in memory, exponentially large to print, serialize or compare
      "{% set ns = namespace(d={}) %}{% for i in range(60) %}{% set ns.d = {'a': ns.d, 'b': ns.d} %}{% endfor %}"
      "{{ ns.d|tojson }}",
      "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}",
      "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}"
      "{{ ns.x == ns.x }}",
      // copies of one large string
      "{% set s = 'x' * 6000000 %}{{ ([s] * 1000)|length }}",
      "{% set s = 'x' * 6000000 %}{% set l = [s, s, s, s, s, s, s, s, s, s] %}{{ l|length }}",
      "{% set s = ('x\n' * 1000000) %}{{ s|indent(1000)|length }}",
      // quadratic: a growing string copied on every step
      "{% set ns = namespace(s='') %}{% for i in range(200000) %}{% set ns.s = ns.s ~ '0123456789abcdef' %}{% endfor %}",
  };
  ChatRenderOptions small;
  small.limits.max_work = 32 << 20;  // the default is 256 MiB: the first case below checks it, the rest run faster
  for (const char* t : hostile) {
    const auto start = std::chrono::steady_clock::now();
    auto r = render_str(t, "{}", t == hostile[0] ? ChatRenderOptions{} : small);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_FALSE(r.ok()) << t;
    EXPECT_NE(r.error().find("MiB of values"), std::string::npos) << t << "\n" << r.error();
    EXPECT_LT(s, 30.0) << t;  // a generous bound (sanitizer builds); it was minutes, or never
  }
  // A namespace that contains itself: printing or comparing it is an error, not a stack overflow.
  for (const char* t : {"{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns }}",
                        "{% set ns = namespace(a=1) %}{% set ns.me = [ns] %}{{ ns == ns }}",
                        "{% set ns = namespace(a=1) %}{% set ns.me = [ns] %}{{ [ns] < [ns] }}"}) {
    auto r = render_str(t);
    ASSERT_FALSE(r.ok()) << t;
    EXPECT_NE(r.error().find("contain itself"), std::string::npos) << t << "\n" << r.error();
  }
  // A list wrapped in a list once per loop step: each step's assignment checks the value for the
  // namespace (no cycles), which the budget counts, so the depth stays in the thousands and the
  // render ends in the budget's error rather than a deep recursion.
  auto deep_r = render_str("{% set ns = namespace(x=[]) %}{% for i in range(400000) %}{% set ns.x = [ns.x] %}{% endfor %}");
  ASSERT_FALSE(deep_r.ok());
  EXPECT_NE(deep_r.error().find("MiB of values"), std::string::npos) << deep_r.error();
  // And a value that deep is destroyed without a recursion that deep (this overflowed the stack at
  // 250,000 levels before).
  {
    jinja::Value v = jinja::Value::list({});
    for (int i = 0; i < 400000; ++i) v = jinja::Value::list({v});
    jinja::Value d = jinja::Value::dict({});
    for (int i = 0; i < 400000; ++i) {
      jinja::ValueDict e;
      e.set("a", d);
      d = jinja::Value::dict(std::move(e));
    }
  }
  // Variables nested past the bound are refused as such, not a stack overflow.
  std::string deep = "{\"x\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto t = ChatTemplate::parse("{{ x }}");
  ASSERT_TRUE(t.ok());
  auto rv = t->render(ojson::parse(deep));
  ASSERT_FALSE(rv.ok());
  EXPECT_NE(rv.error().find("template variables: value nested more than"), std::string::npos) << rv.error();
  // A smaller budget is the caller's to set; ordinary work within it still renders.
  ChatRenderOptions o;
  o.limits.max_work = 1 << 20;
  EXPECT_FALSE(render_str("{% set s = 'x' * 600000 %}{{ [s, s]|length }}", "{}", o).ok());
  EXPECT_TRUE(render_str("{% set s = 'x' * 600000 %}{{ [s, s]|length }}").ok());
  EXPECT_EQ(*render_str("{% set s = 'x' * 1000 %}{{ [s, s]|join|length }}", "{}", o), "2000");
}

TEST(Jinja, VariablesMustBeAnObject) {
  auto t = ChatTemplate::parse("x");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->render(ojson::array()).ok());
}

TEST(ChatTemplateCorpus, EveryTemplateMatchesJinja2OnEveryConversation) {
  const fs::path root = PAGODA_CHAT_TEMPLATES_DIR;
  if (!fs::exists(root / "templates")) GTEST_SKIP() << "no " << root;
  std::vector<fs::path> templates, convs;
  for (const auto& e : fs::directory_iterator(root / "templates")) templates.push_back(e.path());
  for (const auto& e : fs::directory_iterator(root / "conversations")) convs.push_back(e.path());
  std::sort(templates.begin(), templates.end());
  std::sort(convs.begin(), convs.end());
  int total = 0, passed = 0;
  for (const auto& tp : templates) {
    auto t = ChatTemplate::parse(slurp(tp));
    for (const auto& cp : convs) {
      const fs::path want_path = root / "expected" / tp.stem() / (cp.stem().string() + ".txt");
      if (!fs::exists(want_path)) continue;
      ++total;
      const std::string want = slurp(want_path);
      const std::string name = tp.stem().string() + " / " + cp.stem().string();
      if (!t) {
        if (want.rfind("ERROR: ", 0) == 0) ++passed;
        else ADD_FAILURE() << name << ": " << t.error();
        continue;
      }
      auto got = t->render(ojson::parse(slurp(cp)), fixture_options());
      if (want.rfind("ERROR: ", 0) == 0) {
        if (!got) ++passed;
        else ADD_FAILURE() << name << ": Jinja2 refuses (" << want << ") but we rendered";
      } else if (!got) {
        ADD_FAILURE() << name << ": " << got.error();
      } else if (*got != want) {
        ADD_FAILURE() << name << ": output differs " << first_difference(want, *got);
      } else {
        ++passed;
      }
    }
  }
  std::printf("chat-template corpus: %d of %d renders match Jinja2\n", passed, total);
  EXPECT_EQ(passed, total);
  EXPECT_GE(total, 280);
}

}  // namespace
}  // namespace pagoda
