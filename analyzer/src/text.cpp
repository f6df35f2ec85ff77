// Text output: escaping for terminals, aligned tables.
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/analyze/text.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace sockrewind::analyze {

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one (overlong, surrogate,
// beyond U+10FFFF, truncated).
size_t utf8_length(const std::string& s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  uint32_t cp = 0;
  uint32_t min = 0;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
    cp = b0 & 0x1fU;
    min = 0x80;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    cp = b0 & 0x0fU;
    min = 0x800;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    cp = b0 & 0x07U;
    min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < n) {
    return 0;
  }
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0U) != 0x80) {
      return 0;
    }
    cp = cp << 6U | (b & 0x3fU);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;
  }
  return cp <= 0x9f ? 0 : n; // C1 controls (U+0080..U+009F) are escaped like invalid bytes
}

void append_hex(std::string& out, unsigned char u) {
  static constexpr char k_hex[] = "0123456789abcdef";
  out += "\\x";
  out += k_hex[u >> 4U];
  out += k_hex[u & 0xfU];
}

} // namespace

std::string escape_text(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && u < 0x7f) {
      out += s[i++];
      continue;
    }
    const size_t n = u < 0x80 ? 0 : utf8_length(s, i);
    if (n == 0) {
      append_hex(out, u);
      ++i;
      continue;
    }
    out.append(s, i, n);
    i += n;
  }
  return out;
}

void write_table(const std::vector<std::vector<std::string>>& rows,
                 std::ostream& out,
                 const std::string& indent) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    if (r.size() == 1) {
      continue;
    }
    width.resize(std::max(width.size(), r.size()));
    for (size_t i = 0; i < r.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  for (const auto& r : rows) {
    std::string line = indent;
    if (r.size() == 1) {
      out << line << r[0] << "\n";
      continue;
    }
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) {
        line.append(width[i] - r[i].size() + 2, ' ');
      }
    }
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out << line << "\n";
  }
}

std::string na_text(uint32_t v) {
  return v == k_na ? std::string("-") : std::to_string(v);
}

} // namespace sockrewind::analyze
