#pragma once
// Text output shared by every command's text renderer: escaping for terminals, aligned
// tables, and numbers that may be missing. Data is kept raw; only renderers escape.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace sockrewind::analyze {

// Escapes what could drive a terminal as \xNN, byte by byte: C0 controls (ESC, BEL, CR, LF,
// ...), DEL, C1 controls (U+0080..U+009F, e.g. the one-byte CSI) and every byte that is not
// part of valid UTF-8. Valid UTF-8 text passes unchanged.
std::string escape_text(const std::string& s);

// Prints rows as left-aligned columns separated by two spaces (the last column unpadded). A row
// of one cell is a free-form line (a gap marker): printed as is, not part of the widths.
void write_table(const std::vector<std::vector<std::string>>& rows,
                 std::ostream& out,
                 const std::string& indent = "");

// A Sample field: "-" for k_na, else the number.
std::string na_text(uint32_t v);

} // namespace sockrewind::analyze
