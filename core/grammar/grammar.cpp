#include "core/grammar/grammar.h"

#include <fmt/format.h>

#include <functional>
#include <map>
#include <unordered_map>

namespace pagoda::grammar {

namespace {
// Repetition bounds beyond this are almost certainly a mistake and would unroll into huge grammars.
constexpr int32_t kMaxRepeat = 100000;

std::string where(int line, int col) { return fmt::format("grammar:{}:{}", line, col); }
}  // namespace

// Lowers the expression tree: groups, repetitions and multi-byte classes become generated rules,
// so every alternative is a flat sequence of byte sets and rule references.
class GrammarBuilder {
 public:
  Result<Grammar> run(const std::vector<RuleDef>& defs, std::string_view root) {
    for (const auto& d : defs) {
      if (ids_.count(d.name)) return make_error(where(d.line, d.col) + ": rule '" + d.name + "' is defined twice");
      ids_[d.name] = new_rule(d.name);
    }
    for (const auto& d : defs) PAGODA_TRY(lower_body(ids_[d.name], d.body));
    auto it = ids_.find(std::string(root));
    if (it == ids_.end()) return make_error("grammar: no '" + std::string(root) + "' rule (the start rule)");
    g_.root_ = it->second;
    flatten();
    const auto nullable = nullable_rules();
    PAGODA_TRY(check_left_recursion(nullable));
    record_chains(nullable);
    return std::move(g_);
  }

 private:
  using Seq = std::vector<Elem>;

  int32_t new_rule(std::string name) {
    g_.rules_.push_back(Rule{std::move(name), {}});
    bodies_.emplace_back();
    return int32_t(g_.rules_.size() - 1);
  }
  int32_t gen_rule(int32_t parent) { return new_rule(fmt::format("{}#{}", g_.rules_[size_t(parent)].name, ++generated_)); }

  int32_t set_index(const ByteSet& s) {
    auto [it, fresh] = set_ids_.try_emplace(s.bits, int32_t(g_.sets_.size()));
    if (fresh) g_.sets_.push_back(s);
    return it->second;
  }
  Elem bytes_elem(const ByteSet& s) { return Elem{ElemKind::kBytes, set_index(s)}; }
  Elem byte_elem(uint8_t b) {
    ByteSet s;
    s.set(b);
    return bytes_elem(s);
  }

  Status lower_body(int32_t rule, const Expr& e) {
    if (e.kind == Expr::Kind::kAlt) {
      for (const auto& c : e.children) {
        Seq s;
        PAGODA_TRY(lower_seq(rule, c, s));
        bodies_[size_t(rule)].push_back(std::move(s));
      }
      return {};
    }
    Seq s;
    PAGODA_TRY(lower_seq(rule, e, s));
    bodies_[size_t(rule)].push_back(std::move(s));
    return {};
  }

  Status lower_seq(int32_t rule, const Expr& e, Seq& out) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        for (char c : e.text) out.push_back(byte_elem(uint8_t(c)));
        return {};
      case Expr::Kind::kSeq:
        for (const auto& c : e.children) PAGODA_TRY(lower_seq(rule, c, out));
        return {};
      case Expr::Kind::kRef: {
        auto it = ids_.find(e.text);
        if (it == ids_.end()) return make_error(where(e.line, e.col) + ": undefined rule '" + e.text + "'");
        out.push_back(Elem{ElemKind::kRef, it->second});
        return {};
      }
      case Expr::Kind::kClass:
        out.push_back(lower_class(rule, e));
        return {};
      case Expr::Kind::kAlt: {
        const int32_t r = gen_rule(rule);
        PAGODA_TRY(lower_body(r, e));
        out.push_back(Elem{ElemKind::kRef, r});
        return {};
      }
      case Expr::Kind::kRepeat:
        return lower_repeat(rule, e, out);
    }
    return {};
  }

  // A class is one byte set when all its code points are ASCII; otherwise a rule whose
  // alternatives are the UTF-8 byte-range sequences of its ranges.
  Elem lower_class(int32_t rule, const Expr& e) {
    const auto seqs = utf8_sequences(normalize_ranges(e.ranges, e.negated));
    ByteSet single;
    bool multi = false;
    for (const auto& s : seqs) {
      if (s.size() == 1) single.set_range(s[0].lo, s[0].hi);
      else multi = true;
    }
    if (!multi) return bytes_elem(single);
    const int32_t r = gen_rule(rule);
    if (single != ByteSet{}) bodies_[size_t(r)].push_back(Seq{bytes_elem(single)});
    for (const auto& s : seqs) {
      if (s.size() == 1) continue;
      Seq alt;
      for (const auto& br : s) {
        ByteSet b;
        b.set_range(br.lo, br.hi);
        alt.push_back(bytes_elem(b));
      }
      bodies_[size_t(r)].push_back(std::move(alt));
    }
    return Elem{ElemKind::kRef, r};
  }

  // x{m,n}: m copies, then nested optionals (x (x (x)?)?)? so each length parses one way;
  // x{m,}: m copies then a right-recursive star rule.
  Status lower_repeat(int32_t rule, const Expr& e, Seq& out) {
    if (e.min < 0 || e.min > kMaxRepeat || e.max > kMaxRepeat || (e.max >= 0 && e.max < e.min))
      return make_error(where(e.line, e.col) + fmt::format(": bad repetition bounds {{{},{}}} (0 <= min <= max <= {})",
                                                           e.min, e.max, kMaxRepeat));
    Seq item;
    PAGODA_TRY(lower_seq(rule, e.children.at(0), item));
    Elem x;
    if (item.size() == 1) {
      x = item[0];
    } else {
      const int32_t r = gen_rule(rule);
      bodies_[size_t(r)].push_back(item);
      x = Elem{ElemKind::kRef, r};
    }
    for (int32_t i = 0; i < e.min; ++i) out.push_back(x);
    if (e.max < 0) {
      const int32_t star = gen_rule(rule);
      bodies_[size_t(star)].push_back(Seq{x, Elem{ElemKind::kRef, star}});
      bodies_[size_t(star)].push_back(Seq{});
      out.push_back(Elem{ElemKind::kRef, star});
      return {};
    }
    int32_t inner = -1;
    std::vector<int32_t> chain;
    for (int32_t i = e.min; i < e.max; ++i) {
      const int32_t opt = gen_rule(rule);
      chain.push_back(opt);
      Seq s{x};
      if (inner >= 0) s.push_back(Elem{ElemKind::kRef, inner});
      bodies_[size_t(opt)].push_back(std::move(s));
      bodies_[size_t(opt)].push_back(Seq{});
      inner = opt;
    }
    if (inner >= 0) out.push_back(Elem{ElemKind::kRef, inner});
    if (chain.size() > 1) {
      const int32_t twin = gen_rule(rule);
      bodies_[size_t(twin)].push_back(Seq{x, Elem{ElemKind::kRef, twin}});
      bodies_[size_t(twin)].push_back(Seq{});
      pending_chains_.push_back({x, Grammar::Chain{std::move(chain), twin}});
    }
    return {};
  }

  void flatten() {
    for (size_t r = 0; r < bodies_.size(); ++r) {
      for (const auto& alt : bodies_[r]) {
        g_.rules_[r].alts.push_back(int32_t(g_.elems_.size()));
        g_.elems_.insert(g_.elems_.end(), alt.begin(), alt.end());
        g_.elems_.push_back(Elem{ElemKind::kEnd, 0});
        g_.rule_of_.resize(g_.elems_.size(), int32_t(r));
      }
    }
  }

  std::vector<bool> nullable_rules() const {
    const auto& rules = g_.rules_;
    const auto& elems = g_.elems_;
    std::vector<bool> nullable(rules.size(), false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < rules.size(); ++r) {
        if (nullable[r]) continue;
        for (int32_t a : rules[r].alts) {
          int32_t p = a;
          while (elems[size_t(p)].kind == ElemKind::kRef && nullable[size_t(elems[size_t(p)].arg)]) ++p;
          if (elems[size_t(p)].kind == ElemKind::kEnd) {
            nullable[r] = changed = true;
            break;
          }
        }
      }
    }
    return nullable;
  }

  // lower_repeat builds each chain innermost first, so chain[k - 1] is O_k.
  void record_chains(const std::vector<bool>& nullable) {
    g_.chain_of_.assign(g_.rules_.size(), Grammar::ChainLink{});
    for (const auto& [x, chain] : pending_chains_) {
      if (x.kind == ElemKind::kRef && nullable[size_t(x.arg)]) continue;  // an item may consume nothing
      const int32_t id = int32_t(g_.chains_.size());
      for (size_t k = 0; k < chain.rules.size(); ++k) g_.chain_of_[size_t(chain.rules[k])] = {id, int32_t(k + 1)};
      g_.chains_.push_back(chain);
    }
  }

  // The matcher expands rule references eagerly before each byte, so a rule that reaches itself
  // without consuming a byte would expand forever. Tail references are exempt: the matcher
  // reuses the caller's frame for them, so such a cycle revisits a state it has already seen.
  Status check_left_recursion(const std::vector<bool>& nullable) const {
    const auto& rules = g_.rules_;
    const auto& elems = g_.elems_;
    // Left-edge edges r -> s, marked whether the reference is in tail position.
    std::vector<std::vector<std::pair<int32_t, bool>>> edges(rules.size());
    for (size_t r = 0; r < rules.size(); ++r)
      for (int32_t a : rules[r].alts)
        for (int32_t p = a; elems[size_t(p)].kind == ElemKind::kRef; ++p) {
          const int32_t s = elems[size_t(p)].arg;
          edges[r].push_back({s, elems[size_t(p) + 1].kind == ElemKind::kEnd});
          if (!nullable[size_t(s)]) break;
        }
    for (size_t r = 0; r < rules.size(); ++r)
      for (auto [s, tail] : edges[r])
        if (!tail && reaches(edges, s, int32_t(r)))
          return make_error("grammar: rule '" + user_name(rules[r].name) +
                            "' is left-recursive (it can reach itself before matching any byte); rewrite it with "
                            "repetition, e.g. a ::= b (\",\" b)*");
    return {};
  }

  static bool reaches(const std::vector<std::vector<std::pair<int32_t, bool>>>& edges, int32_t from, int32_t to) {
    std::vector<bool> seen(edges.size(), false);
    std::vector<int32_t> todo{from};
    while (!todo.empty()) {
      const int32_t r = todo.back();
      todo.pop_back();
      if (r == to) return true;
      if (seen[size_t(r)]) continue;
      seen[size_t(r)] = true;
      for (auto [s, tail] : edges[size_t(r)]) todo.push_back(s);
    }
    return false;
  }

  static std::string user_name(const std::string& n) { return n.substr(0, n.find('#')); }

  Grammar g_;
  std::unordered_map<std::string, int32_t> ids_;
  std::map<std::array<uint64_t, 4>, int32_t> set_ids_;
  std::vector<std::vector<Seq>> bodies_;
  std::vector<std::pair<Elem, Grammar::Chain>> pending_chains_;  // item, its optionals O_1..O_n
  int generated_ = 0;
};

int32_t Grammar::clamp_repeat(int32_t pos, int32_t cap) const {
  const int32_t r = rule_of_[size_t(pos)];
  const ChainLink& link = chain_of_[size_t(r)];
  // O_1 ::= x | "" is laid out differently from the twin, and never needs mapping (cap >= 1).
  if (link.chain < 0 || link.k < cap || link.k < 2) return pos;
  const auto& alts = rules_[size_t(r)].alts;
  if (pos >= alts[1]) return pos;  // the empty alternative is a single kEnd, the same everywhere
  return rules_[size_t(chains_[size_t(link.chain)].twin)].alts[0] + (pos - alts[0]);
}

int32_t Grammar::repeat_count(int32_t pos) const {
  const int32_t r = rule_of_[size_t(pos)];
  const ChainLink& link = chain_of_[size_t(r)];
  if (link.chain < 0 || link.k < 2 || pos >= rules_[size_t(r)].alts[1]) return 0;
  return link.k;
}

Result<Grammar> Grammar::build(const std::vector<RuleDef>& rules, std::string_view root) {
  return GrammarBuilder().run(rules, root);
}

}  // namespace pagoda::grammar
