#pragma once
// Reading /proc files: whole-file reads with errno kept as data.

#include <cstdint>
#include <string>
#include <string_view>

namespace sockrewind::collect {

struct ReadResult {
  std::string data;
  int error = 0; // 0 on success, else errno

  bool ok() const { return error == 0; }
};

// Reads the whole file at `path` (relative to `dirfd` when it is not AT_FDCWD). /proc files
// report size 0 and return about a page per read(), so this loops until EOF into one buffer.
ReadResult read_whole_file(const char* path, int dirfd = -100 /* AT_FDCWD */);

// Parses a decimal unsigned integer that must fill `s` (surrounding blanks allowed).
bool parse_u64(std::string_view s, uint64_t& out);

} // namespace sockrewind::collect
