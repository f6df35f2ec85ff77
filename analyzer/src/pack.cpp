// pack: copies chosen snapshots into one new file of the same schema, redacting on request.
// Rows are read from validated, read-only inputs and written with fresh ids; nothing a file
// defines beyond the schema is read.
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/pack.hpp>
#include <sockrewind/analyze/time.hpp>
#include <sockrewind/store/archive.hpp>
#include <sockrewind/store/atomic_file.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/meta.hpp>
#include <sockrewind/store/schema.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <system_error>
#include <tuple>
#include <variant>

namespace sockrewind::analyze {

namespace {

// SipHash-2-4 (Aumasson and Bernstein, 2012) as the keyed PRF of the redaction.
uint64_t rotl(uint64_t x, int b) {
  return std::rotl(x, b);
}

uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | p[i];
  }
  return v;
}

uint64_t siphash24(const std::array<uint8_t, 16>& key, std::string_view data) {
  const uint64_t k0 = load_le64(key.data());
  const uint64_t k1 = load_le64(key.data() + 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
  uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
  uint64_t v3 = 0x7465646279746573ULL ^ k1;
  const auto round = [&] {
    v0 += v1;
    v1 = rotl(v1, 13);
    v1 ^= v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = rotl(v1, 17);
    v1 ^= v2;
    v2 = rotl(v2, 32);
  };
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  const size_t n = data.size();
  const size_t full = n - n % 8;
  for (size_t i = 0; i < full; i += 8) {
    const uint64_t m = load_le64(p + i);
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  uint64_t last = static_cast<uint64_t>(n & 0xff) << 56;
  for (size_t i = 0; i < n % 8; ++i) {
    last |= static_cast<uint64_t>(p[full + i]) << (8 * i);
  }
  v3 ^= last;
  round();
  round();
  v0 ^= last;
  v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) {
    round();
  }
  return v0 ^ v1 ^ v2 ^ v3;
}

std::string hex8(uint64_t v) {
  static constexpr char k_hex[] = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i) {
    s[static_cast<size_t>(i)] = k_hex[v & 0xf];
    v >>= 4;
  }
  return s;
}

// pack --redact: the Redactor applied to what the archive writer copies.
class RedactRewrite final : public store::Rewrite {
public:
  explicit RedactRewrite(const Redactor& r) : m_red(r) {}

  std::string address(std::string_view addr) const override { return m_red.address(addr); }

  std::string hostname(std::string_view s) const override { return m_red.hostname(s); }

  std::string unix_path(std::string_view s) const override { return m_red.unix_path(s); }

  std::string cmdline(std::string_view s) const override { return m_red.cmdline(s); }

  std::string netns_name(std::string_view s) const override { return m_red.name("netns", s); }

  bool keep_issue_examples() const override { return false; }

private:
  const Redactor& m_red;
};

struct Chosen {
  std::string file;
  SnapshotInfo info;
};

// The output file's errors (store::AtomicFile's, naming the path) as load errors (exit 3).
[[noreturn]] void throw_file_error(const std::system_error& e) {
  throw LoadError(std::string("pack: ") + e.what());
}

} // namespace

// ---------------------------------------------------------------------------------------------

Redactor::Redactor(const std::array<uint8_t, 16>& key) : m_key(key) {}

std::array<uint8_t, 16> Redactor::random_key() {
  std::random_device rd;
  std::array<uint8_t, 16> key{};
  for (size_t i = 0; i < key.size(); i += 4) {
    const uint32_t r = rd();
    for (size_t j = 0; j < 4; ++j) {
      key[i + j] = static_cast<uint8_t>(r >> (8 * j));
    }
  }
  return key;
}

uint64_t Redactor::prf(std::string_view domain, std::string_view data) const {
  std::string msg(domain);
  msg += '\0';
  msg += data;
  return siphash24(m_key, msg);
}

std::string Redactor::tag(std::string_view domain, std::string_view data) const {
  return hex8(prf(domain, data));
}

void Redactor::permute(uint8_t* a, size_t bits, size_t keep, std::string_view domain) const {
  // Crypto-PAn's construction with SipHash: output bit i = input bit i XOR PRF(input bits
  // 0..i-1). Every flip depends only on the original prefix, so shared prefixes stay shared.
  std::vector<uint8_t> orig(a, a + (bits + 7) / 8);
  for (size_t i = keep; i < bits; ++i) {
    std::string prefix(orig.size() + 2, '\0');
    for (size_t b = 0; b < i; ++b) {
      if ((orig[b / 8] & (0x80U >> (b % 8))) != 0) {
        prefix[b / 8] = static_cast<char>(static_cast<uint8_t>(prefix[b / 8]) | (0x80U >> (b % 8)));
      }
    }
    prefix[orig.size()] = static_cast<char>(i & 0xff);
    prefix[orig.size() + 1] = static_cast<char>(i >> 8);
    if ((prf(domain, prefix) & 1U) != 0) {
      a[i / 8] = static_cast<uint8_t>(a[i / 8] ^ (0x80U >> (i % 8)));
    }
  }
}

std::string Redactor::address(std::string_view addr) const {
  std::string out(addr);
  auto* a = reinterpret_cast<uint8_t*>(out.data());
  if (addr.size() == 4) {
    const uint8_t o0 = a[0];
    const bool unspecified = a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 0;
    if (unspecified || o0 >= 224) {
      return out; // 0.0.0.0, multicast, reserved, broadcast: not about anyone
    }
    const bool two = o0 == 100 || o0 == 169 || o0 == 172 || o0 == 192;
    permute(a, 32, two ? 16 : 8, "ipv4");
    return out;
  }
  if (addr.size() != 16) {
    return out;
  }
  static constexpr uint8_t k_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a, k_mapped, sizeof k_mapped) == 0) {
    const std::string v4 = address(std::string_view(out).substr(12));
    std::memcpy(a + 12, v4.data(), 4);
    return out;
  }
  bool zero_prefix = true;
  for (size_t i = 0; i < 15; ++i) {
    zero_prefix = zero_prefix && a[i] == 0;
  }
  if ((zero_prefix && a[15] <= 1) || a[0] == 0xff) {
    return out; // ::, ::1, multicast
  }
  permute(a, 128, 16, "ipv6");
  return out;
}

std::string Redactor::hostname(std::string_view name) const {
  return "host-" + tag("host", name);
}

std::string Redactor::unix_path(std::string_view path) const {
  if (path.empty()) {
    return std::string(path);
  }
  if (path.front() == '@') {
    return "@redacted-" + tag("unix", path);
  }
  return "/redacted/" + tag("unix", path);
}

std::string Redactor::cmdline(std::string_view cmdline) const {
  std::string out;
  size_t pos = 0;
  bool first = true;
  while (pos <= cmdline.size()) {
    const size_t end = std::min(cmdline.find(' ', pos), cmdline.size());
    const std::string_view arg = cmdline.substr(pos, end - pos);
    if (first) {
      const size_t slash = arg.rfind('/');
      out += slash == std::string_view::npos ? arg : arg.substr(slash + 1);
      first = false;
    } else if (!arg.empty()) {
      out += " arg-" + tag("arg", arg);
    }
    pos = end + 1;
  }
  return out;
}

std::string Redactor::name(std::string_view prefix, std::string_view value) const {
  return std::string(prefix) + "-" + tag(prefix, value);
}

// ---------------------------------------------------------------------------------------------

PackResult write_pack(const PackOptions& opts) {
  const int64_t since = opts.since ? parse_time(*opts.since) : INT64_MIN;
  const int64_t until = opts.until ? parse_time(*opts.until) : INT64_MAX;

  // Which snapshots: in the time window and host, each snapshot (SnapshotInfo::key) once, from
  // the first file that has it.
  PackResult result;
  std::vector<Chosen> candidates;
  for (const std::string& file : opts.paths) {
    for (SnapshotInfo& s : load_snapshot_index(file)) {
      if (s.realtime_ns < since || s.realtime_ns > until || (opts.host && s.host != *opts.host)) {
        continue;
      }
      candidates.push_back({file, std::move(s)});
    }
  }
  std::vector<Chosen> chosen;
  std::set<store::SnapshotKey> seen; // views into `candidates`, which no longer changes
  for (const Chosen& c : candidates) {
    if (!seen.insert(c.info.key()).second) {
      ++result.duplicates;
      continue;
    }
    chosen.push_back(c);
  }
  if (chosen.empty()) {
    throw UsageError("pack: no snapshot matches (check --since, --until, --host)");
  }
  std::stable_sort(chosen.begin(), chosen.end(), [](const Chosen& a, const Chosen& b) {
    return std::tie(a.info.host, a.info.realtime_ns) < std::tie(b.info.host, b.info.realtime_ns);
  });

  // The output: a temporary file beside it, given its name only when complete, never
  // replacing anything.
  if (::access(opts.out.c_str(), F_OK) == 0) {
    throw UsageError("pack: " + opts.out + " exists; not replacing it");
  }
  std::optional<store::AtomicFile> file;
  try {
    file.emplace(opts.out, store::AtomicFile::Replace::never);
  } catch (const std::system_error& e) {
    throw_file_error(e);
  }
  const std::string& temp = file->temp_path();

  const Redactor red(Redactor::random_key());
  const RedactRewrite redact(red);
  const store::Rewrite keep;
  {
    std::map<std::string, std::unique_ptr<store::Db>> inputs;
    store::ArchiveWriter out(temp, opts.redact ? static_cast<const store::Rewrite&>(redact) : keep);
    for (const Chosen& c : chosen) {
      auto& in = inputs[c.file];
      if (!in) {
        in = std::make_unique<store::Db>(open_validated(c.file));
        ++result.files;
      }
      try {
        out.add(*in,
                {c.info.snapshot_id,
                 c.info.host,
                 c.info.boot_id,
                 c.info.realtime_ns,
                 c.info.boottime_ns,
                 c.info.boottime_ns + c.info.duration_ns});
      } catch (const store::DbError& e) {
        throw read_error(c.file, e);
      }
      ++result.snapshots;
    }
    out.finish("sockrewind-analyze pack",
               opts.redact,
               store::ArchiveWriter::Vacuum::yes,
               opts.port_index ? store::ArchiveWriter::PortIndex::yes
                               : store::ArchiveWriter::PortIndex::no);
    result.sockets = out.sockets();
  }
  try {
    file->commit();
  } catch (const std::system_error& e) {
    throw_file_error(e);
  }
  result.path = opts.out;
  return result;
}

} // namespace sockrewind::analyze
