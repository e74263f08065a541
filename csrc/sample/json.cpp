// clean_deploy C++ sample: recursive-descent JSON parser (see json.h).
#include "json.h"

#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "error.h"

namespace clean_deploy {
namespace sample {

class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& source) : s_(text), source_(source) {}

  JsonValue document() {
    skip_ws();
    JsonValue v = value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected trailing characters after the JSON value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;
  const std::string& s_;
  const std::string& source_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw SampleError(source_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": invalid JSON: " + what);
  }

  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }

  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  void literal(const char* word) {
    for (const char* p = word; *p; ++p, ++pos_)
      if (pos_ >= s_.size() || s_[pos_] != *p) fail(std::string("expected '") + word + "'");
  }

  JsonValue value(int depth) {
    if (depth > kMaxDepth) fail("nested too deeply");
    JsonValue v;
    const char c = peek();
    if (c == '{') {
      v.type_ = JsonValue::Type::kObject;
      ++pos_;
      skip_ws();
      if (peek() == '}') {
        ++pos_;
        return v;
      }
      for (;;) {
        skip_ws();
        if (peek() != '"') fail("expected a string key");
        std::string key = string();
        skip_ws();
        expect(':');
        skip_ws();
        JsonValue member = value(depth + 1);
        size_t k = 0;  // a repeated key keeps the last value, like Python's json
        while (k < v.keys_.size() && v.keys_[k] != key) ++k;
        if (k == v.keys_.size()) {
          v.keys_.push_back(std::move(key));
          v.values_.push_back(std::move(member));
        } else {
          v.values_[k] = std::move(member);
        }
        skip_ws();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type_ = JsonValue::Type::kArray;
      ++pos_;
      skip_ws();
      if (peek() == ']') {
        ++pos_;
        return v;
      }
      for (;;) {
        skip_ws();
        v.array_.push_back(value(depth + 1));
        skip_ws();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type_ = JsonValue::Type::kString;
      v.string_ = string();
      return v;
    }
    if (c == 't' || c == 'f') {
      v.type_ = JsonValue::Type::kBool;
      v.bool_ = c == 't';
      literal(v.bool_ ? "true" : "false");
      return v;
    }
    if (c == 'n') {
      literal("null");
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.type_ = JsonValue::Type::kNumber;
      v.number_ = number();
      return v;
    }
    // json.dumps writes NaN / Infinity for non-finite floats: accept them (the sidecar checks ranges)
    if (c == 'N') {
      literal("NaN");
      v.type_ = JsonValue::Type::kNumber;
      v.number_ = std::numeric_limits<double>::quiet_NaN();
      return v;
    }
    if (c == 'I') {
      literal("Infinity");
      v.type_ = JsonValue::Type::kNumber;
      v.number_ = std::numeric_limits<double>::infinity();
      return v;
    }
    if (pos_ >= s_.size()) fail("unexpected end of input");
    fail(std::string("unexpected character '") + c + "'");
  }

  double number() {
    const size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == 'I') {  // -Infinity
      literal("Infinity");
      return -std::numeric_limits<double>::infinity();
    }
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        ++pos_;
      } else {
        break;
      }
    }
    double out = 0.0;
    const char* first = s_.data() + start;
    const char* last = s_.data() + pos_;
    const auto res = std::from_chars(first, last, out);
    if (res.ec != std::errc() || res.ptr != last) {
      pos_ = start;
      fail("malformed number '" + std::string(first, last) + "'");
    }
    return out;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') cp |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') cp |= static_cast<uint32_t>(c - 'A' + 10);
      else fail("bad \\u escape");
    }
    return cp;
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // surrogate pair
            if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') fail("unpaired surrogate");
            pos_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
    }
  }
};

JsonValue JsonValue::parse(const std::string& text, const std::string& source) {
  return JsonParser(text, source).document();
}

const char* JsonValue::type_name(Type t) {
  switch (t) {
    case Type::kNull: return "null";
    case Type::kBool: return "a boolean";
    case Type::kNumber: return "a number";
    case Type::kString: return "a string";
    case Type::kArray: return "an array";
    case Type::kObject: return "an object";
  }
  return "?";
}

namespace {
[[noreturn]] void type_error(const std::string& what, const char* want, JsonValue::Type got) {
  throw SampleError(what + ": expected " + want + ", got " + JsonValue::type_name(got));
}
}  // namespace

bool JsonValue::as_bool(const std::string& what) const {
  if (type_ != Type::kBool) type_error(what, "a boolean", type_);
  return bool_;
}

double JsonValue::as_number(const std::string& what) const {
  if (type_ != Type::kNumber) type_error(what, "a number", type_);
  return number_;
}

const std::string& JsonValue::as_string(const std::string& what) const {
  if (type_ != Type::kString) type_error(what, "a string", type_);
  return string_;
}

const std::vector<JsonValue>& JsonValue::as_array(const std::string& what) const {
  if (type_ != Type::kArray) type_error(what, "an array", type_);
  return array_;
}

bool JsonValue::has(const std::string& key) const {
  if (type_ != Type::kObject) return false;
  for (const auto& k : keys_)
    if (k == key) return true;
  return false;
}

const JsonValue& JsonValue::at(const std::string& key, const std::string& what) const {
  if (type_ != Type::kObject) type_error(what, "an object", type_);
  for (size_t k = 0; k < keys_.size(); ++k)
    if (keys_[k] == key) return values_[k];
  throw SampleError(what + ": missing key '" + key + "'");
}

}  // namespace sample
}  // namespace clean_deploy
