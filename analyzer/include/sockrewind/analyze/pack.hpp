#pragma once
// `sockrewind-analyze pack`: chosen snapshots of many files in one new snapshot file (same
// schema), optionally redacted for a bug report.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::analyze {

struct PackOptions {
  std::vector<std::string> paths; // files, already expanded
  std::string out;                // must not exist
  std::optional<std::string> since;
  std::optional<std::string> until;
  std::optional<std::string> host;
  bool redact = false;
  // Also write the port indexes (store::create_archive_indexes): `timeline --port` of a quiet
  // port reads its runs only, for about a fifth more bytes.
  bool port_index = false;
};

struct PackResult {
  std::string path;
  size_t files = 0;
  size_t snapshots = 0;
  size_t duplicates = 0; // the same snapshot found in two files, packed once
  size_t sockets = 0;
};

// Writes the pack under a temporary name next to `out`, then links it to `out` (never
// replacing anything). Throws UsageError (no snapshot chosen, `out` exists) or LoadError.
PackResult write_pack(const PackOptions& opts);

// Consistent, keyed replacement of what identifies a host or a person. The same input gives
// the same output within one pack (one key); different keys give unrelated outputs.
class Redactor {
public:
  explicit Redactor(const std::array<uint8_t, 16>& key);

  // A random key from the system.
  static std::array<uint8_t, 16> random_key();

  // Prefix-preserving: two addresses sharing their first n bits give outputs sharing their
  // first n bits. Loopback, private, link-local and CGNAT addresses stay in their range,
  // public ones stay public: IPv4 keeps its first octet (and the second for 100, 169, 172 and
  // 192, which hold private ranges); IPv6 keeps its first 16 bits; the unspecified and
  // broadcast addresses, ::1, IPv4 multicast/reserved (224/3) and IPv6 multicast are kept;
  // IPv4-mapped IPv6 addresses map their IPv4 part as IPv4. `addr` is 4 or 16 bytes.
  std::string address(std::string_view addr) const;

  std::string hostname(std::string_view name) const;
  // A unix socket path: "@" stays for abstract names; the rest becomes "/redacted/<tag>".
  std::string unix_path(std::string_view path) const;
  // A cmdline (arguments joined by spaces): argv[0]'s file name stays, every argument after
  // it becomes a tag.
  std::string cmdline(std::string_view cmdline) const;
  // Any other name (e.g. an `ip netns` name), as "<prefix>-<tag>".
  std::string name(std::string_view prefix, std::string_view value) const;

private:
  uint64_t prf(std::string_view domain, std::string_view data) const;
  std::string tag(std::string_view domain, std::string_view data) const;
  // Flips bits [keep, bits) of `a` (big-endian bit order) each by a PRF of the bits before it.
  void permute(uint8_t* a, size_t bits, size_t keep, std::string_view domain) const;

  std::array<uint8_t, 16> m_key;
};

} // namespace sockrewind::analyze
