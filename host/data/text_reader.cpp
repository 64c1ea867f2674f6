#include "data/text_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/error.h"

namespace vae::text {

std::string read_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    std::error_code lec;
    if (fs::is_symlink(fs::symlink_status(path, lec))) throw DataError(path, 0, "is a link to a missing file");
    throw DataError(path, 0, "no such file or directory");
  }
  if (fs::is_directory(st)) throw DataError(path, 0, "is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path, 0, "cannot open file for reading");
  std::string buf;
  // A regular file is read in one go from its size. Pipes (--data <(cat ratings.csv)), FIFOs,
  // character devices and /proc files report no useful size: those are read until end of
  // stream instead, so they work like the file they stand for.
  std::streamoff size = -1;
  if (fs::is_regular_file(st)) {
    in.seekg(0, std::ios::end);
    size = in.tellg();
    in.seekg(0, std::ios::beg);
    if (!in) {
      in.clear();
      size = -1;
    }
  }
  if (size > 0) {
    buf.resize(static_cast<size_t>(size));
    in.read(buf.data(), size);
    if (in.gcount() != size) throw DataError(path, 0, "read error (file changed while reading?)");
  } else {
    constexpr size_t kChunk = size_t{1} << 20;
    for (;;) {
      const size_t old = buf.size();
      buf.resize(old + kChunk);
      in.read(buf.data() + old, static_cast<std::streamsize>(kChunk));
      buf.resize(old + static_cast<size_t>(in.gcount()));
      // An endless binary stream (--data /dev/zero, /dev/urandom) would fill memory before any
      // line is parsed; text never holds a NUL byte, so stop at the first chunk that does.
      if (std::memchr(buf.data() + old, 0, buf.size() - old)) break;  // reported below
      if (!in) break;
    }
    if (in.bad()) throw DataError(path, 0, "read error");
  }
  // Formats a ratings file is often found in, named rather than read as garbled text.
  auto starts = [&](std::string_view magic) { return buf.compare(0, magic.size(), magic) == 0; };
  if (starts("\x1f\x8b")) throw DataError(path, 0, "is gzip-compressed: decompress it first (gunzip)");
  if (starts(std::string_view("PK\x03\x04", 4)))
    throw DataError(path, 0, "is a zip archive: unzip it first (data/fetch_movielens.sh downloads and unpacks MovieLens)");
  if (starts("\xff\xfe") || starts("\xfe\xff") || (buf.size() >= 2 && (buf[0] == 0) != (buf[1] == 0)))
    throw DataError(path, 0, "is UTF-16 text: save it as UTF-8");
  // Text never holds a NUL byte: a binary file, or one damaged in copying (a NUL in a title would
  // be written raw into every CSV and report made from it).
  if (const void* nul = std::memchr(buf.data(), 0, buf.size())) {
    const auto at = static_cast<size_t>(static_cast<const char*>(nul) - buf.data());
    const auto line = 1 + std::count(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(at), '\n');
    const size_t nl = buf.rfind('\n', at);
    const size_t col = nl == std::string::npos ? at + 1 : at - nl;  // 1-based
    throw DataError(path, static_cast<long>(line),
                    "holds a NUL byte (byte " + std::to_string(col) + " of the line): not a text file");
  }
  if (buf.size() >= 3 && buf.compare(0, 3, "\xEF\xBB\xBF") == 0) buf.erase(0, 3);
  if (buf.find_first_not_of(" \t\r\n") == std::string::npos) throw DataError(path, 0, "empty file");
  return buf;
}

LineReader::LineReader(std::string_view buf)
    : buf_(buf), eol_(buf.find('\n') == std::string_view::npos && buf.find('\r') != std::string_view::npos ? '\r' : '\n') {}

bool LineReader::next(std::string_view* line) {
  while (pos_ < buf_.size()) {
    const size_t nl = buf_.find(eol_, pos_);
    const size_t end = nl == std::string_view::npos ? buf_.size() : nl;
    std::string_view l = buf_.substr(pos_, end - pos_);
    pos_ = nl == std::string_view::npos ? buf_.size() : nl + 1;
    ++line_no_;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.empty()) continue;
    *line = l;
    return true;
  }
  return false;
}

std::string_view trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

void split(std::string_view line, char sep, std::vector<std::string_view>* out) {
  out->clear();
  size_t b = 0;
  for (;;) {
    const size_t p = line.find(sep, b);
    if (p == std::string_view::npos) {
      out->push_back(line.substr(b));
      return;
    }
    out->push_back(line.substr(b, p - b));
    b = p + 1;
  }
}

void split(std::string_view line, std::string_view sep, std::vector<std::string_view>* out) {
  out->clear();
  size_t b = 0;
  for (;;) {
    const size_t p = line.find(sep, b);
    if (p == std::string_view::npos) {
      out->push_back(line.substr(b));
      return;
    }
    out->push_back(line.substr(b, p - b));
    b = p + sep.size();
  }
}

std::string split_csv(std::string_view line, std::vector<std::string_view>* out,
                      std::vector<std::string>* storage) {
  out->clear();
  storage->clear();
  // Quoted fields are collected first and views taken afterwards: growing `storage` would
  // otherwise invalidate earlier views.
  std::vector<std::pair<size_t, size_t>> spans;  // (storage index + 1) or (offset, len) in line
  std::vector<bool> quoted;
  size_t i = 0;
  for (;;) {
    if (i < line.size() && line[i] == '"') {
      std::string field;
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        field.push_back(line[i++]);
      }
      if (!closed) return "unterminated quoted field";
      if (i < line.size() && line[i] != ',')
        return "unexpected character after closing quote (a quote inside a quoted field "
               "must be doubled)";
      storage->push_back(std::move(field));
      spans.emplace_back(storage->size() - 1, 0);
      quoted.push_back(true);
    } else {
      const size_t p = line.find(',', i);
      const size_t end = p == std::string_view::npos ? line.size() : p;
      spans.emplace_back(i, end - i);
      quoted.push_back(false);
      i = end;
    }
    if (i >= line.size()) break;
    ++i;  // the comma
    // A trailing comma means one more, empty, field.
    if (i == line.size()) {
      spans.emplace_back(i, 0);
      quoted.push_back(false);
      break;
    }
  }
  for (size_t k = 0; k < spans.size(); ++k) {
    if (quoted[k])
      out->push_back((*storage)[spans[k].first]);
    else
      out->push_back(line.substr(spans[k].first, spans[k].second));
  }
  return "";
}

NumParse parse_int64(std::string_view s, int64_t* v) {
  if (s.empty()) return NumParse::kNotNumber;
  const char* b = s.data();
  const char* e = b + s.size();
  const auto r = std::from_chars(b, e, *v);
  if (r.ec == std::errc::result_out_of_range && r.ptr == e) return NumParse::kOverflow;
  if (r.ec != std::errc() || r.ptr != e) return NumParse::kNotNumber;
  return NumParse::kOk;
}

NumParse parse_double(std::string_view s, double* v) {
  if (s.empty()) return NumParse::kNotNumber;
  // from_chars also takes "inf"/"nan"; only plain decimals are ratings.
  const char c0 = s[0] == '-' && s.size() > 1 ? s[1] : s[0];
  if (!((c0 >= '0' && c0 <= '9') || c0 == '.')) return NumParse::kNotNumber;
  const char* b = s.data();
  const char* e = b + s.size();
  const auto r = std::from_chars(b, e, *v, std::chars_format::general);
  if (r.ec == std::errc::result_out_of_range && r.ptr == e) return NumParse::kOverflow;
  if (r.ec != std::errc() || r.ptr != e) return NumParse::kNotNumber;
  if (!std::isfinite(*v)) return NumParse::kOverflow;
  return NumParse::kOk;
}

bool is_canonical_int(std::string_view s) {
  if (!s.empty() && s[0] == '-') s.remove_prefix(1);
  if (s.empty()) return false;
  if (s[0] == '0' && s.size() > 1) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

size_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // > U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(ch);
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::string escape(std::string_view s, size_t max_bytes, bool show_invisible) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::min(s.size(), max_bytes) + 8);
  size_t i = 0;
  while (i < s.size()) {
    if (i >= max_bytes) {
      out += "\xe2\x80\xa6";  // …
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
      ++i;
      continue;
    }
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    // Whole valid UTF-8 characters are kept; any other byte is escaped like a control byte.
    const size_t bad = find_invalid_utf8(s.substr(i, std::min<size_t>(4, s.size() - i)));
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (bad == 0 || i + len > s.size()) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
      ++i;
      continue;
    }
    // show_invisible: characters that print as nothing or as a plain space (no-break and other
    // Unicode spaces, zero-width and direction marks, a byte-order mark) would make a message name
    // a field that looks like another, so they are written as \u{XXXX}.
    uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    const bool invisible = cp == 0xA0 || cp == 0xAD || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) ||
                           (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 ||
                           cp == 0xFEFF || (cp >= 0x80 && cp <= 0x9F);
    if (invisible && show_invisible) {
      char u[16];
      std::snprintf(u, sizeof u, "\\u{%04x}", static_cast<unsigned>(cp));
      out += u;
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string quote(std::string_view s) { return "'" + escape(s, 60, /*show_invisible=*/true) + "'"; }

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string csv_number(double v, int digits) {
  if (!std::isfinite(v)) return "";
  char b[64];
  std::snprintf(b, sizeof b, "%.*g", digits, v);
  return b;
}

namespace {

// U+00C0…U+00FF to ASCII: their base letters (ligatures spelled out); × and ÷ are kept.
const char* const kLatin1Base[64] = {
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "o", nullptr, "o", "u", "u", "u", "u", "y", "th", "ss",
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "o", nullptr, "o", "u", "u", "u", "u", "y", "th", "y"};

// U+0100…U+017F (Latin Extended-A: Polish, Czech, Turkish, Hungarian... letters) by ranges of
// one base letter; capitals and small letters alternate inside each range.
const char* latin_ext_a_base(uint32_t cp) {
  struct Range {
    uint32_t last;
    const char* base;
  };
  static const Range kRanges[] = {{0x105, "a"}, {0x10D, "c"}, {0x111, "d"},  {0x11B, "e"}, {0x123, "g"},
                                  {0x127, "h"}, {0x131, "i"}, {0x133, "ij"}, {0x135, "j"}, {0x138, "k"},
                                  {0x142, "l"}, {0x14B, "n"}, {0x151, "o"},  {0x153, "oe"}, {0x159, "r"},
                                  {0x161, "s"}, {0x167, "t"}, {0x173, "u"},  {0x175, "w"}, {0x178, "y"},
                                  {0x17E, "z"}, {0x17F, "s"}};
  for (const Range& r : kRanges)
    if (cp <= r.last) return r.base;
  return nullptr;
}

}  // namespace

std::string search_key(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : static_cast<char>(c));
      ++i;
      continue;
    }
    // Two- and three-byte characters that have a plain spelling; anything else is kept as is.
    const auto d = i + 1 < s.size() ? static_cast<unsigned char>(s[i + 1]) : 0u;
    const char* plain = nullptr;
    size_t len = 1;
    if (c >= 0xC2 && c <= 0xDF && (d & 0xC0u) == 0x80u) {
      const uint32_t cp = ((c & 0x1Fu) << 6) | (d & 0x3Fu);
      len = 2;
      if (cp >= 0xC0 && cp <= 0xFF) plain = kLatin1Base[cp - 0xC0];
      else if (cp >= 0x100 && cp <= 0x17F) plain = latin_ext_a_base(cp);
    } else if (c == 0xE2 && d == 0x80 && i + 2 < s.size() && (static_cast<unsigned char>(s[i + 2]) & 0xC0u) == 0x80u) {
      // U+2010…U+2015 dashes and U+2018/2019 quotes, as typed on a keyboard.
      const auto e = static_cast<unsigned char>(s[i + 2]);
      len = 3;
      if (e >= 0x90 && e <= 0x95) plain = "-";
      else if (e == 0x98 || e == 0x99) plain = "'";
      else if (e == 0x9C || e == 0x9D) plain = "\"";
    }
    if (plain)
      out += plain;
    else
      out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

size_t display_width(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0u) != 0x80u;  // continuation bytes add no column
  return n;
}

}  // namespace vae::text
