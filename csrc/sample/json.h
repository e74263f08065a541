// clean_deploy C++ sample: a small JSON reader (RFC 8259 subset that json.dumps writes: objects,
// arrays, strings with escapes, numbers, true/false/null). Enough for the exported model's sidecar;
// no dependency to vendor. Numbers are parsed locale-independently (std::from_chars).
#pragma once

#include <string>
#include <vector>

namespace clean_deploy {
namespace sample {

class JsonValue {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  // Parses `text`; errors (SampleError) name `source` and the line:column.
  static JsonValue parse(const std::string& text, const std::string& source);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Typed accessors; `what` names the value in the error message when the type differs.
  bool as_bool(const std::string& what) const;
  double as_number(const std::string& what) const;
  const std::string& as_string(const std::string& what) const;
  const std::vector<JsonValue>& as_array(const std::string& what) const;

  // Object members: `has` / `at` (at throws naming `what` and the missing key).
  bool has(const std::string& key) const;
  const JsonValue& at(const std::string& key, const std::string& what) const;

  static const char* type_name(Type t);

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<JsonValue> array_;
  // object members in file order (parallel vectors: std::vector allows the incomplete element type)
  std::vector<std::string> keys_;
  std::vector<JsonValue> values_;
};

}  // namespace sample
}  // namespace clean_deploy
