// Small text helpers shared by the dataset loaders: whole-file reading, a line iterator that
// tracks 1-based line numbers, field splitters and strict number parsing. Everything works on
// string_views into one file buffer so multi-million-line rating files load quickly.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vae::text {

// Whole text file as bytes. Throws DataError(path, line, ...) when it is missing, a directory,
// unreadable, empty or holds a NUL byte (not text). A leading UTF-8 byte-order mark is dropped.
std::string read_file(const std::string& path);

// Iterates lines; strips a trailing '\r' (CRLF files) and skips lines that are empty after
// that (MovieLens' u.genre ends with a blank line). A text without any '\n' but with '\r's
// has classic Mac line ends: those end its lines.
class LineReader {
 public:
  explicit LineReader(std::string_view buf);
  // Next non-empty line, or false at the end.
  bool next(std::string_view* line);
  // 1-based number of the line last returned.
  long line_no() const { return line_no_; }

 private:
  std::string_view buf_;
  char eol_;
  size_t pos_ = 0;
  long line_no_ = 0;
};

std::string_view trim(std::string_view s);

// Splits on a single-character or multi-character separator (no quoting).
void split(std::string_view line, char sep, std::vector<std::string_view>* out);
void split(std::string_view line, std::string_view sep, std::vector<std::string_view>* out);

// Splits one CSV line (RFC 4180 quoting: "a, b" and doubled "" inside quotes). Unquoted fields
// point into `line`; quoted ones are unescaped into `storage` (so `out` stays valid until the
// next call with the same storage). Returns an error message, or "" on success.
std::string split_csv(std::string_view line, std::vector<std::string_view>* out,
                      std::vector<std::string>* storage);

enum class NumParse { kOk, kNotNumber, kOverflow };
// Whole field must be an optionally signed decimal integer.
NumParse parse_int64(std::string_view s, int64_t* v);
// Whole field must be a finite decimal number (no inf/nan).
NumParse parse_double(std::string_view s, double* v);
// True when s is an integer in canonical form ("0", "17", "-3"; no '+', no leading zeros),
// i.e. one that round-trips through its numeric value.
bool is_canonical_int(std::string_view s);

// Offset of the first byte that breaks UTF-8 (overlongs, surrogates and > U+10FFFF included),
// or npos when s is valid.
size_t find_invalid_utf8(std::string_view s);
std::string latin1_to_utf8(std::string_view s);

// Field text made safe for an error message: control bytes (NUL included, which would end the
// message early where it is printed as a C string) and bytes that are not valid UTF-8 become
// "\xNN"; text past max_bytes is cut and marked with "…".
// show_invisible: also characters that print as nothing or as a plain space (U+00A0, U+200B, a
// byte-order mark, ...) become "\u{XXXX}", so a field that looks like another is told apart.
std::string escape(std::string_view s, size_t max_bytes = 200, bool show_invisible = false);
// escape(s, 60, show_invisible) in single quotes: how a field is quoted in error messages.
std::string quote(std::string_view s);
// A field for a CSV file we write: as is, or in double quotes (inner quotes doubled) when it holds
// a comma, a quote or a line break (RFC 4180, what split_csv reads back).
std::string csv_field(std::string_view s);
// A number for a CSV file we write, with `digits` significant digits (printf's %.*g); empty where
// there is no figure (NaN, ±inf): every CSV reader takes an empty field as missing, not all "nan".
std::string csv_number(double v, int digits);
// A title as typed into a search box would match it: ASCII letters to small letters, the accented
// Latin letters of UTF-8 (Latin-1 and Latin Extended-A) to their plain small letters, typographic
// dashes and quotes to ASCII, every other byte kept ("AMELIE" and "amélie" find "Amélie",
// "Łódź" finds "Lodz").
std::string search_key(std::string_view s);
// Columns a UTF-8 string takes in a terminal table: its code points (titles hold accented Latin
// letters, one column each).
size_t display_width(std::string_view s);

}  // namespace vae::text
