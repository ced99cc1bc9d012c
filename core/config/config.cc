#include "core/config/config.h"

#include <xxhash.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <variant>

#include "comm/reduce/scheme_spec.h"
#include "core/config/key_rules.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

// See Note [Experiment config].

using Strings = std::vector<std::string>;
using Field = std::variant<bool*, int64_t*, uint64_t*, double*, std::string*, Strings*,
                           std::vector<CodecOverride>*>;

constexpr double kInf = std::numeric_limits<double>::infinity();

// What a value must satisfy beyond its type. Defaults are not checked: they satisfy their rules.
struct Rule {
  // kScheme: a reduction-scheme spec (a codec spec or powersgd:...); kCodec: a codec spec;
  // kCut: a codec spec or one of `choices` (what may cross a model split's cut); kDevice: a
  // train.device value.
  enum Kind { kAny, kRange, kOneOf, kNonEmpty, kRunName, kScheme, kCodec, kCut, kDevice };
  Kind kind = kAny;
  double lo = -kInf, hi = kInf;  // kRange
  bool loOpen = false, hiOpen = false;
  std::string_view choices;  // kOneOf: "a|b|c"
};

// Whether text is valid UTF-8 of characters YAML prints as they are: no C0 or C1 control
// characters (tabs and line breaks included), no DEL, and none of U+FEFF, U+FFFE, U+FFFF, which
// YAML readers drop or replace. That is what config strings may hold, since they become folder
// names, log lines and the YAML of the run folder, which must read back to the same config.
bool printableText(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      ++i;
      continue;
    }
    const int extra = c >= 0xc2 && c < 0xe0    ? 1
                      : c >= 0xe0 && c < 0xf0  ? 2
                      : c >= 0xf0 && c <= 0xf4 ? 3
                                               : -1;
    if (extra < 0 || i + static_cast<size_t>(extra) >= text.size()) return false;
    uint32_t cp = c & (0x3f >> extra);
    for (int k = 1; k <= extra; ++k) {
      const auto d = static_cast<unsigned char>(text[i + static_cast<size_t>(k)]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    if (cp <= 0x9f || cp == 0xfeff || cp == 0xfffe || cp == 0xffff) return false;
    i += static_cast<size_t>(extra) + 1;
  }
  return true;
}

// Whether v is one of choices ("a|b|c").
bool among(std::string_view choices, std::string_view v) {
  for (std::string_view rest = choices; !rest.empty();) {
    const size_t bar = std::min(rest.find('|'), rest.size());
    if (rest.substr(0, bar) == v) return true;
    rest.remove_prefix(std::min(bar + 1, rest.size()));
  }
  return false;
}

constexpr Rule atLeast(double lo) { return {Rule::kRange, lo, kInf, false, true, {}}; }
constexpr Rule above(double lo) { return {Rule::kRange, lo, kInf, true, true, {}}; }
constexpr Rule within(double lo, double hi, bool loOpen, bool hiOpen) {
  return {Rule::kRange, lo, hi, loOpen, hiOpen, {}};
}
constexpr Rule oneOf(std::string_view choices) {
  return {Rule::kOneOf, 0, 0, false, false, choices};
}
constexpr Rule nonEmpty() { return {Rule::kNonEmpty, 0, 0, false, false, {}}; }
constexpr Rule runName() { return {Rule::kRunName, 0, 0, false, false, {}}; }
constexpr Rule schemeSpec() { return {Rule::kScheme, 0, 0, false, false, {}}; }
constexpr Rule codecSpec() { return {Rule::kCodec, 0, 0, false, false, {}}; }
constexpr Rule cutSpec(std::string_view words) { return {Rule::kCut, 0, 0, false, false, words}; }
constexpr Rule deviceSpec() { return {Rule::kDevice, 0, 0, false, false, {}}; }

// One key of the schema. Its type is the alternative `field` returns; its default is that field
// of a default-constructed Config, so config.h stays the one place defaults are written.
struct Key {
  std::string_view path;  // "section.key" or "section.subsection.key" as written in YAML
  Field (*field)(Config&);
  Rule rule;
};

// Keeps the table one line per key; expands to an accessor lambda.
#define CDL_FIELD(member) [](Config& c) -> Field { return &c.member; }

// Every integer and size has an upper bound that keeps the arithmetic on it in range: step counts
// up to 1e12, batch and epoch counts up to 1e6 (their product stays far inside int64), buckets up
// to 1 GiB, synthetic sets up to 1e6 examples, layer sizes that fit in memory.
constexpr Key kSchema[] = {
    {"name", CDL_FIELD(name), runName()},
    {"seed", CDL_FIELD(seed), {}},

    {"data.dataset", CDL_FIELD(data.dataset), oneOf("fashion-mnist|synthetic|text")},
    {"data.path", CDL_FIELD(data.path), {}},
    {"data.text_path", CDL_FIELD(data.textPath), {}},
    {"data.context", CDL_FIELD(data.context), within(1, 4096, false, false)},
    {"data.synthetic_train", CDL_FIELD(data.syntheticTrain), within(1, 1e6, false, false)},
    {"data.synthetic_test", CDL_FIELD(data.syntheticTest), within(1, 1e6, false, false)},

    {"model.name", CDL_FIELD(model.name), oneOf("mlp|cnn|resnet20|charlm|torchscript")},
    {"model.torchscript", CDL_FIELD(model.torchscript), {}},
    {"model.hidden", CDL_FIELD(model.hidden), within(1, 65536, false, false)},
    {"model.width", CDL_FIELD(model.width), within(1, 1024, false, false)},
    {"model.layers", CDL_FIELD(model.layers), within(1, 64, false, false)},
    {"model.heads", CDL_FIELD(model.heads), within(1, 64, false, false)},
    {"model.split.stages", CDL_FIELD(model.split.stages), within(1, 64, false, false)},
    // Segment names are checked by the trainer, which knows the model.
    {"model.split.cut_after", CDL_FIELD(model.split.cutAfter), {}},
    {"model.split.micro_batches", CDL_FIELD(model.split.microBatches),
     within(1, 4096, false, false)},
    {"model.split.activation_codec", CDL_FIELD(model.split.activationCodec), cutSpec("auto|cdl")},
    {"model.split.gradient_codec", CDL_FIELD(model.split.gradientCodec), codecSpec()},

    {"cdl.mode", CDL_FIELD(cdl.mode), oneOf("none|cdl|rcdl|lsq")},
    {"cdl.weight_bits", CDL_FIELD(cdl.weightBits), within(1, 8, false, false)},
    {"cdl.act_bits", CDL_FIELD(cdl.actBits), within(1, 8, false, false)},
    {"cdl.first_last_bits", CDL_FIELD(cdl.firstLastBits), within(1, 8, false, false)},
    {"cdl.lambda_w", CDL_FIELD(cdl.lambdaW), atLeast(0)},
    {"cdl.lambda_a", CDL_FIELD(cdl.lambdaA), atLeast(0)},
    {"cdl.kappa", CDL_FIELD(cdl.kappa), within(0, 20, true, false)},
    {"cdl.kappa_final", CDL_FIELD(cdl.kappaFinal), within(0, 20, false, false)},
    {"cdl.train_kappa", CDL_FIELD(cdl.trainKappa), {}},
    {"cdl.window", CDL_FIELD(cdl.window), within(1, 256, false, false)},
    {"cdl.rate_warmup_steps", CDL_FIELD(cdl.rateWarmupSteps), within(0, 1e12, false, false)},
    {"cdl.diagnostics", CDL_FIELD(cdl.diagnostics), {}},

    {"train.epochs", CDL_FIELD(train.epochs), within(1, 1e6, false, false)},
    {"train.batch_size", CDL_FIELD(train.batchSize), within(1, 1e6, false, false)},
    {"train.max_steps", CDL_FIELD(train.maxSteps), within(0, 1e12, false, false)},
    {"train.optimizer", CDL_FIELD(train.optimizer), oneOf("sgd|adam")},
    {"train.lr", CDL_FIELD(train.lr), above(0)},
    {"train.momentum", CDL_FIELD(train.momentum), within(0, 1, false, true)},
    {"train.nesterov", CDL_FIELD(train.nesterov), {}},
    {"train.weight_decay", CDL_FIELD(train.weightDecay), atLeast(0)},
    {"train.schedule", CDL_FIELD(train.schedule), oneOf("constant|cosine|step")},
    {"train.warmup_steps", CDL_FIELD(train.warmupSteps), within(0, 1e12, false, false)},
    {"train.step_every", CDL_FIELD(train.stepEvery), within(1, 1e12, false, false)},
    {"train.step_gamma", CDL_FIELD(train.stepGamma), within(0, 1, true, false)},
    {"train.threads", CDL_FIELD(train.threads), within(0, 4096, false, false)},
    {"train.skip_nonfinite", CDL_FIELD(train.skipNonfinite), {}},
    {"train.device", CDL_FIELD(train.device), deviceSpec()},

    {"comm.codec", CDL_FIELD(comm.codec), schemeSpec()},
    {"comm.error_feedback", CDL_FIELD(comm.errorFeedback), {}},
    {"comm.bucket_mb", CDL_FIELD(comm.bucketMb), within(0, 1024, true, false)},
    {"comm.first_bucket_mb", CDL_FIELD(comm.firstBucketMb), within(0, 1024, true, false)},
    {"comm.min_compress_numel", CDL_FIELD(comm.minCompressNumel), within(0, 1e12, false, false)},
    {"comm.overrides", CDL_FIELD(comm.overrides), {}},
    {"comm.adaptive.enabled", CDL_FIELD(comm.adaptive.enabled), {}},
    {"comm.adaptive.budget", CDL_FIELD(comm.adaptive.budget), oneOf("error|time")},
    {"comm.adaptive.overlap", CDL_FIELD(comm.adaptive.overlap), within(0, 1, false, false)},
    {"comm.adaptive.link_mbps", CDL_FIELD(comm.adaptive.linkMbps), within(0, 1e9, false, false)},
    {"comm.adaptive.alpha", CDL_FIELD(comm.adaptive.alpha), within(0, 1e6, true, false)},
    {"comm.adaptive.warmup_steps", CDL_FIELD(comm.adaptive.warmupSteps),
     within(0, 1e12, false, false)},
    {"comm.adaptive.every_steps", CDL_FIELD(comm.adaptive.everySteps),
     within(1, 1e12, false, false)},
    {"comm.adaptive.window", CDL_FIELD(comm.adaptive.window), within(1, 10000, false, false)},
    {"comm.adaptive.buckets", CDL_FIELD(comm.adaptive.buckets), within(1, 1e7, false, false)},
    {"comm.adaptive.candidates", CDL_FIELD(comm.adaptive.candidates), schemeSpec()},
    // Empty: the family of comm.codec (the trainer checks that it is one).
    {"comm.adaptive.families", CDL_FIELD(comm.adaptive.families), oneOf("qsgd|topk|powersgd")},

    {"checkpoint.every_steps", CDL_FIELD(checkpoint.everySteps), within(0, 1e12, false, false)},
    {"checkpoint.every_epoch", CDL_FIELD(checkpoint.everyEpoch), {}},
    {"checkpoint.keep", CDL_FIELD(checkpoint.keep), within(1, 1e6, false, false)},

    {"log.runs_dir", CDL_FIELD(log.runsDir), nonEmpty()},
    {"log.every_steps", CDL_FIELD(log.everySteps), within(1, 1e12, false, false)},

    // cdl-launch reads these (and checks the strings it writes into the sbatch script).
    {"slurm.nodes", CDL_FIELD(slurm.nodes), within(1, 1e6, false, false)},
    {"slurm.tasks_per_node", CDL_FIELD(slurm.tasksPerNode), within(0, 1e6, false, false)},
    {"slurm.time", CDL_FIELD(slurm.time), nonEmpty()},
    {"slurm.partition", CDL_FIELD(slurm.partition), {}},
    {"slurm.account", CDL_FIELD(slurm.account), {}},
    {"slurm.job_name", CDL_FIELD(slurm.jobName), {}},
    {"slurm.output", CDL_FIELD(slurm.output), {}},
};

#undef CDL_FIELD

// Reading goes through the same accessors as writing so that there is one table; the config is
// only read.
Field fieldOf(const Key& k, const Config& c) { return k.field(const_cast<Config&>(c)); }

std::string_view sectionOf(std::string_view path) {
  const size_t dot = path.rfind('.');
  return dot == std::string_view::npos ? std::string_view() : path.substr(0, dot);
}

std::string_view leafOf(std::string_view path) {
  const size_t dot = path.rfind('.');
  return dot == std::string_view::npos ? path : path.substr(dot + 1);
}

const Key* findKey(std::string_view path) {
  for (const Key& k : kSchema) {
    if (k.path == path) return &k;
  }
  return nullptr;
}

bool isSection(std::string_view path) {
  if (path.empty()) return true;
  for (const Key& k : kSchema) {
    if (sectionOf(k.path) == path) return true;
  }
  return false;
}

// The names directly under a section ("" is the top level), for error messages.
std::string namesUnder(std::string_view section) {
  std::vector<std::string_view> names;
  for (const Key& k : kSchema) {
    std::string_view rest = k.path;
    if (!section.empty()) {
      if (rest.size() <= section.size() || rest.substr(0, section.size()) != section ||
          rest[section.size()] != '.') {
        continue;
      }
      rest.remove_prefix(section.size() + 1);
    }
    const std::string_view name = rest.substr(0, rest.find('.'));
    if (names.empty() || names.back() != name) names.push_back(name);
  }
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

// Shortest text that reads back to exactly the same double.
std::string formatDouble(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::optional<double> parseDouble(std::string_view s) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || !std::isfinite(v)) return {};
  return v;
}

// Integers may be written as integral floats ("1e4", "2.0"), never with a fraction.
template <typename T>
std::optional<T> parseInteger(std::string_view s) {
  std::string_view digits = s;
  if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);
  T v = 0;
  const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (r.ec == std::errc() && r.ptr == digits.data() + digits.size()) return v;
  if (r.ec == std::errc::result_out_of_range) return {};
  const std::optional<double> d = parseDouble(s);
  // 2^63 and 2^64 are exact doubles; the upper bound is exclusive.
  const double hi = std::is_signed_v<T> ? 0x1p63 : 0x1p64;
  const double lo = std::is_signed_v<T> ? -0x1p63 : 0.0;
  if (!d || *d != std::trunc(*d) || *d < lo || *d >= hi) return {};
  return static_cast<T>(*d);
}

// YAML 1.2 core schema booleans; YAML 1.1's yes/no/on/off are too easy to write by accident.
std::optional<bool> parseBool(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return {};
}

const char* typeName(const Field& f) {
  return std::visit(
      [](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, bool>) return "a bool (true or false)";
        if constexpr (std::is_same_v<T, int64_t>) return "an integer";
        if constexpr (std::is_same_v<T, uint64_t>) return "a non-negative integer";
        if constexpr (std::is_same_v<T, double>) return "a number";
        if constexpr (std::is_same_v<T, std::string>) return "a string";
        if constexpr (std::is_same_v<T, Strings>) return "a list of strings";
        if constexpr (std::is_same_v<T, std::vector<CodecOverride>>) {
          return "a list of {pattern, codec} maps";
        }
      },
      f);
}

std::string describe(const YAML::Node& n) {
  if (n.IsNull()) return "nothing (null)";
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  return (n.Tag() == "!" ? "the quoted string '" : "'") + n.Scalar() + "'";
}

std::string describeRange(const Rule& r) {
  // Whole bounds as integers: "[1, 1000000]", not "[1, 1e+06]".
  const auto bound = [](double v) {
    return std::floor(v) == v && std::fabs(v) < 1e15 ? std::to_string(static_cast<int64_t>(v))
                                                     : formatDouble(v);
  };
  if (r.hi == kInf) return (r.loOpen ? "> " : ">= ") + bound(r.lo);
  return std::string("in ") + (r.loOpen ? "(" : "[") + bound(r.lo) + ", " + bound(r.hi) +
         (r.hiOpen ? ")" : "]");
}

// Where values come from: a YAML document (a file, whose marks give line numbers) or one --set.
struct Source {
  std::string name;
  bool hasLines;
};

// Applies one source's values on top of a config.
class Applier {
 public:
  Applier(Config& c, Source src) : c_(c), src_(std::move(src)) {}

  // Checks every key's value against its rule, as if each had been read (a config built in
  // code rather than loaded).
  void checkAll() const {
    const YAML::Node none;
    for (const Key& k : kSchema) {
      std::visit(
          [&](auto* p) {
            using T = std::remove_pointer_t<decltype(p)>;
            if constexpr (std::is_same_v<T, std::vector<CodecOverride>>) {
              for (size_t i = 0; i < p->size(); ++i) {
                const std::string at = std::string(k.path) + "[" + std::to_string(i) + "]";
                const CodecOverride& o = (*p)[i];
                CDL_CHECK(!o.pattern.empty() && printableText(o.pattern), src_.name, ": ", at,
                          ".pattern must be non-empty UTF-8 text without control characters");
                checkSpec(Rule::kScheme, {}, at + ".codec", o.codec, none);
              }
            } else {
              check(k, *p, none);
            }
          },
          k.field(c_));
    }
  }

  // Sets the key or the section at `path` ("" is the whole document) from node.
  void apply(const std::string& path, const YAML::Node& node, const YAML::Node& keyNode) {
    if (const Key* k = findKey(path)) {
      CDL_CHECK(seen_.insert(path).second, where(keyNode), ": ", path, " is set twice");
      setKey(*k, node);
      return;
    }
    if (!isSection(path)) {
      const std::string_view section = sectionOf(path);
      const std::string known = isSection(section) ? namesUnder(section) : "";
      CDL_THROW(where(keyNode), ": unknown key '", path, "'",
                known.empty() ? ""
                              : " (" + (section.empty() ? "top level" : std::string(section)) +
                                    " has: " + known + ")");
    }
    if (node.IsNull()) return;  // a section with every key commented out
    CDL_CHECK(node.IsMap(), where(node), ": ", path.empty() ? "the document" : path,
              " must be a map with keys ", namesUnder(path), "; got ", describe(node));
    for (const auto& kv : node) {
      CDL_CHECK(kv.first.IsScalar(), where(kv.first), ": keys must be plain names, got ",
                describe(kv.first));
      const std::string& name = kv.first.Scalar();
      // An empty name would leave the path where it is: a document that holds itself through an
      // alias (`&a {"": *a}`) would recurse without end.
      CDL_CHECK(!name.empty(), where(kv.first), ": keys must be plain names, got an empty key",
                path.empty() ? "" : " under " + path);
      apply(path.empty() ? name : path + "." + name, kv.second, kv.first);
    }
  }

 private:
  std::string where(const YAML::Node& n) const {
    if (!src_.hasLines || !n.IsDefined() || n.Mark().is_null()) return src_.name;
    return src_.name + ":" + std::to_string(n.Mark().line + 1);
  }

  [[noreturn]] void wrongType(const Key& k, const Field& f, const YAML::Node& n) const {
    CDL_THROW(where(n), ": ", k.path, " must be ", typeName(f), ", got ", describe(n));
  }

  // The scalar text of a non-string value: quoted text is a string, whatever it spells.
  const std::string& plainScalar(const Key& k, const Field& f, const YAML::Node& n) const {
    if (!n.IsScalar() || n.Tag() == "!") wrongType(k, f, n);
    return n.Scalar();
  }

  void setKey(const Key& k, const YAML::Node& n) {
    const Field f = k.field(c_);
    std::visit(
        [&](auto* p) {
          using T = std::remove_pointer_t<decltype(p)>;
          std::optional<T> v;
          if constexpr (std::is_same_v<T, bool>) {
            v = parseBool(plainScalar(k, f, n));
          } else if constexpr (std::is_same_v<T, double>) {
            v = parseDouble(plainScalar(k, f, n));
          } else if constexpr (std::is_integral_v<T>) {
            v = parseInteger<T>(plainScalar(k, f, n));
          } else if constexpr (std::is_same_v<T, std::string>) {
            if (n.IsScalar()) v = n.Scalar();
          } else if constexpr (std::is_same_v<T, Strings>) {
            v = parseStrings(n);
          } else {
            v = parseOverrides(k, n);
          }
          if (!v) wrongType(k, f, n);
          check(k, *v, n);
          *p = std::move(*v);
        },
        f);
  }

  // A list of non-empty scalars; anything else is no list of strings.
  static std::optional<Strings> parseStrings(const YAML::Node& n) {
    if (!n.IsSequence()) return {};
    Strings out;
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar() || n[i].Scalar().empty()) return {};
      out.push_back(n[i].Scalar());
    }
    return out;
  }

  std::vector<CodecOverride> parseOverrides(const Key& k, const YAML::Node& n) const {
    if (!n.IsSequence()) wrongType(k, k.field(c_), n);
    std::vector<CodecOverride> out;
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      const std::string at = std::string(k.path) + "[" + std::to_string(i) + "]";
      CDL_CHECK(item.IsMap(), where(item), ": ", at, " must be a map {pattern, codec}, got ",
                describe(item));
      std::optional<std::string> pattern, codec;
      for (const auto& kv : item) {
        const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "";
        auto* slot = name == "pattern" ? &pattern : name == "codec" ? &codec : nullptr;
        CDL_CHECK(slot, where(kv.first), ": unknown key '", at, ".", name,
                  "' (an override has: pattern, codec)");
        CDL_CHECK(!*slot, where(kv.first), ": ", at, ".", name, " is set twice");
        CDL_CHECK(kv.second.IsScalar() && !kv.second.Scalar().empty(), where(kv.second), ": ", at,
                  ".", name, " must be a non-empty string, got ", describe(kv.second));
        CDL_CHECK(printableText(kv.second.Scalar()), where(kv.second), ": ", at, ".", name,
                  " must be UTF-8 text without control characters");
        *slot = kv.second.Scalar();
      }
      CDL_CHECK(pattern && codec, where(item), ": ", at, " needs both pattern and codec");
      checkSpec(Rule::kScheme, {}, at + ".codec", *codec, item["codec"]);
      out.push_back({*pattern, *codec});
    }
    return out;
  }

  template <typename T>
  void check(const Key& k, const T& v, const YAML::Node& n) const {
    const Rule& r = k.rule;
    if constexpr (std::is_same_v<T, std::string>) {
      CDL_CHECK(printableText(v), where(n), ": ", k.path,
                " must be UTF-8 text without control characters");
    } else if constexpr (std::is_same_v<T, Strings>) {
      for (size_t i = 0; i < v.size(); ++i) {
        CDL_CHECK(printableText(v[i]), where(n), ": ", k.path, "[", i,
                  "] must be UTF-8 text without control characters");
      }
    }
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      if (r.kind != Rule::kRange) return;
      const double d = static_cast<double>(v);
      const bool ok = (r.loOpen ? d > r.lo : d >= r.lo) && (r.hiOpen ? d < r.hi : d <= r.hi);
      CDL_CHECK(ok, where(n), ": ", k.path, " must be ", describeRange(r), ", got ",
                n.IsScalar() ? n.Scalar() : formatDouble(d));
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (r.kind == Rule::kOneOf) {
        CDL_CHECK(among(r.choices, v), where(n), ": ", k.path, " must be one of ",
                  listed(r.choices), ", got '", v, "'");
      } else if (r.kind == Rule::kScheme || r.kind == Rule::kCodec || r.kind == Rule::kCut) {
        checkSpec(r.kind, r.choices, std::string(k.path), v, n);
      } else if (r.kind == Rule::kDevice) {
        try {
          parseDeviceSpec(v);
        } catch (const Error& e) {
          CDL_THROW(where(n), ": ", k.path, ": ", errorBody(e.what()));
        }
      } else if (r.kind == Rule::kNonEmpty) {
        CDL_CHECK(!v.empty(), where(n), ": ", k.path, " must not be empty");
      } else if (r.kind == Rule::kRunName) {
        CDL_CHECK(
            !v.empty() && v != "." && v != ".." && v.find('/') == std::string::npos, where(n), ": ",
            k.path,
            " names the run folder: it must be non-empty, without '/', and not . or ..; got '", v,
            "'");
      }
    } else if constexpr (std::is_same_v<T, Strings>) {
      for (size_t i = 0; i < v.size(); ++i) {
        const std::string at = std::string(k.path) + "[" + std::to_string(i) + "]";
        const YAML::Node item = n.IsSequence() && i < n.size() ? n[i] : n;
        if (r.kind == Rule::kScheme) checkSpec(r.kind, {}, at, v[i], item);
        CDL_CHECK(r.kind != Rule::kOneOf || among(r.choices, v[i]), where(item), ": ", at,
                  " must be one of ", listed(r.choices), ", got '", v[i], "'");
      }
    }
  }

  static std::string listed(std::string_view choices) {
    std::string out(choices);
    for (size_t i = out.find('|'); i != std::string::npos; i = out.find('|', i)) {
      out.replace(i, 1, ", ");
    }
    return out;
  }

  // A spec value: parsed with the codec layer's own parser, so what loads here also runs.
  void checkSpec(Rule::Kind kind, std::string_view words, const std::string& key,
                 const std::string& v, const YAML::Node& n) const {
    if (among(words, v)) return;
    CDL_CHECK(kind != Rule::kCodec || (v != "cdl" && v != "auto"), where(n), ": ", key, ": '", v,
              "' is for activations; name a codec spec such as qsgd:bits=8,entropy=rans");
    try {
      if (kind == Rule::kScheme) {
        comm::parseSchemeSpec(v);
      } else {
        comm::parseCodecSpec(v);
      }
    } catch (const Error& e) {
      CDL_THROW(where(n), ": ", key, ": ", errorBody(e.what()));
    }
  }

  Config& c_;
  Source src_;
  std::set<std::string> seen_;  // one source may set a key once

 public:
  // The keys this source set.
  const std::set<std::string>& seen() const { return seen_; }
};

// Applies one --set; adds the keys it set to *given.
void applyOverride(Config& c, const std::string& text, std::set<std::string>* given) {
  const std::string origin = "--set '" + text + "'";
  const size_t eq = text.find('=');
  CDL_CHECK(eq != std::string::npos, origin, ": expected key=value, e.g. train.lr=0.1");
  std::string key = text.substr(0, eq);
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.front()))) key.erase(0, 1);
  CDL_CHECK(!key.empty(), origin, ": expected key=value, e.g. train.lr=0.1");
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    CDL_THROW(origin, ": the value is not valid YAML (", e.msg, "); quote it");
  }
  Applier a(c, {origin, false});
  a.apply(key, value, YAML::Node());
  given->insert(a.seen().begin(), a.seen().end());
}

void emitValue(YAML::Emitter& out, const Field& f) {
  std::visit(
      [&](const auto* p) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(p)>>;
        if constexpr (std::is_same_v<T, double>) {
          // A '.' in the mantissa keeps the value a float for YAML 1.1 readers too (PyYAML
          // reads "5e-04" as a string).
          std::string s = formatDouble(*p);
          if (s.find('.') == std::string::npos) s.insert(std::min(s.find('e'), s.size()), ".0");
          out << s;
        } else if constexpr (std::is_same_v<T, Strings>) {
          out << YAML::Flow << YAML::BeginSeq;
          for (const auto& v : *p) out << v;
          out << YAML::EndSeq;
        } else if constexpr (std::is_same_v<T, std::vector<CodecOverride>>) {
          if (p->empty()) out << YAML::Flow;  // "overrides: []" on one line
          out << YAML::BeginSeq;
          for (const auto& o : *p) {
            out << YAML::BeginMap << YAML::Key << "pattern" << YAML::Value << o.pattern << YAML::Key
                << "codec" << YAML::Value << o.codec << YAML::EndMap;
          }
          out << YAML::EndSeq;
        } else {
          out << *p;
        }
      },
      f);
}

}  // namespace

bool operator==(const Config& a, const Config& b) {
  for (const Key& k : kSchema) {
    const Field fa = fieldOf(k, a), fb = fieldOf(k, b);
    const bool same = std::visit([&](auto* p) { return *p == *std::get<decltype(p)>(fb); }, fa);
    if (!same) return false;
  }
  return true;
}

namespace {

// Records where each document of a YAML stream starts.
class DocumentMarks : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
  std::vector<YAML::Mark> starts;
};

[[noreturn]] void throwYamlError(const std::string& origin, const YAML::Mark& mark,
                                 const std::string& msg) {
  const std::string at =
      mark.is_null() ? ""
                     : ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
  CDL_THROW(origin, at, ": YAML syntax error: ", msg);
}

// The one YAML document of a config; none for a text without one. Counts the documents itself
// rather than with YAML::LoadAll: yaml-cpp 0.7 answers a token that no document can start with
// (a stray ',') with empty documents forever, none of which consumes it, and LoadAll collects
// them until memory runs out. A document that starts where the one before it did is that case.
std::optional<YAML::Node> loadOneDocument(const std::string& yaml, const std::string& origin) {
  try {
    std::istringstream in(yaml);
    YAML::Parser parser(in);
    DocumentMarks marks;
    while (marks.starts.size() < 2 && parser.HandleNextDocument(marks)) {
      const size_t n = marks.starts.size();
      if (n == 2 && marks.starts[1].pos == marks.starts[0].pos) {
        const size_t pos = static_cast<size_t>(std::max(0, marks.starts[1].pos));
        throwYamlError(origin, marks.starts[1],
                       "unexpected '" + (pos < yaml.size() ? yaml.substr(pos, 1) : "") + "'");
      }
    }
    CDL_CHECK(marks.starts.size() <= 1, origin, ": expected one YAML document, found more");
    if (marks.starts.empty()) return std::nullopt;
    return YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throwYamlError(origin, e.mark, e.msg);
  }
}

}  // namespace

Config parseConfig(const std::string& yaml, const std::string& origin,
                   const std::vector<std::string>& overrides) {
  const std::optional<YAML::Node> doc = loadOneDocument(yaml, origin);
  Config c;
  std::set<std::string> given;
  if (doc) {
    Applier a(c, {origin, true});
    a.apply("", *doc, YAML::Node());
    given = a.seen();
  }
  for (const std::string& o : overrides) applyOverride(c, o, &given);
  // `model: {torchscript: file}` alone names the model.
  if (!c.model.torchscript.empty() && !given.count("model.name")) c.model.name = "torchscript";
  return c;
}

void checkConfig(const Config& c) {
  Config copy = c;
  Applier(copy, {"config", false}).checkAll();
  checkKeysTogether(c);
}

Config loadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  // A directory opens fine and fails on read: it does not pass for an empty config.
  return parseConfig(readWholeFile(path, "config file"), path, overrides);
}

std::string toYaml(const Config& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::vector<std::string_view> open;  // the sections whose maps are being written, outermost first
  for (const Key& k : kSchema) {
    std::vector<std::string_view> want;
    for (std::string_view s = sectionOf(k.path); !s.empty(); s = sectionOf(s)) {
      want.insert(want.begin(), s);
    }
    size_t same = 0;
    while (same < open.size() && same < want.size() && open[same] == want[same]) ++same;
    for (; open.size() > same; open.pop_back()) out << YAML::EndMap;
    for (; open.size() < want.size(); open.push_back(want[open.size()])) {
      out << YAML::Key << std::string(leafOf(want[open.size()])) << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << std::string(leafOf(k.path)) << YAML::Value;
    emitValue(out, fieldOf(k, c));
  }
  for (; !open.empty(); open.pop_back()) out << YAML::EndMap;
  out << YAML::EndMap;
  CDL_CHECK(out.good(), "cannot write the config as YAML: ", out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

std::string describeDifference(const Config& a, const Config& b) {
  for (const Key& k : kSchema) {
    const Field fa = fieldOf(k, a), fb = fieldOf(k, b);
    const bool same = std::visit([&](auto* p) { return *p == *std::get<decltype(p)>(fb); }, fa);
    if (same) continue;
    const auto text = [&](const Field& f) {
      YAML::Emitter out;
      out << YAML::Flow;
      emitValue(out, f);
      return std::string(out.c_str());
    };
    return std::string(k.path) + " (" + text(fa) + " vs " + text(fb) + ")";
  }
  return {};
}

uint64_t configHash(const Config& c) {
  Config what = c;
  what.slurm = Config::Slurm{};
  what.train.device = Config{}.train.device;  // a run may resume on another device
  const std::string text = toYaml(what);
  return XXH64(text.data(), text.size(), 0);
}

}  // namespace cdl::core
