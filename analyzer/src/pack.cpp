// pack: copies chosen snapshots into one new file of the same schema, redacting on request.
// Rows are read from validated, read-only inputs and written with fresh ids; nothing a file
// defines beyond the schema is read.
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/pack.hpp>
#include <sockrewind/analyze/time.hpp>
#include <sockrewind/store/atomic_file.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/runs.hpp>
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

// ---------------------------------------------------------------------------------------------
// Copying rows: column lists and types from the output's schema (every input was validated
// against the same schema), values as they are.

using store::Value;

struct Column {
  std::string name;
  char type; // 'i' INTEGER, 'r' REAL, 't' TEXT, 'b' BLOB
};

std::vector<Column> columns_of(store::Db& db, const std::string& table) {
  std::vector<Column> out;
  store::Stmt st = db.prepare("SELECT name, upper(type) FROM pragma_table_info(?1) ORDER BY cid");
  st.bind(1, table);
  while (st.step()) {
    const std::string type = st.get_text(1);
    out.push_back({st.get_text(0),
                   type == "INTEGER" ? 'i'
                   : type == "REAL"  ? 'r'
                   : type == "BLOB"  ? 'b'
                                     : 't'});
  }
  return out;
}

Value read_value(const store::Stmt& st, int col, char type) {
  if (st.is_null(col)) {
    return std::monostate{};
  }
  switch (type) {
  case 'i':
    return st.get_int(col);
  case 'r':
    return st.get_double(col);
  case 'b':
    return st.get_blob(col);
  default:
    return st.get_text(col);
  }
}

void bind_value(store::Stmt& st, int index, const Value& v, char type) {
  if (std::holds_alternative<std::monostate>(v)) {
    st.bind_null(index);
  } else if (const auto* i = std::get_if<int64_t>(&v)) {
    st.bind(index, *i);
  } else if (const auto* d = std::get_if<double>(&v)) {
    st.bind(index, *d);
  } else {
    const auto& s = std::get<std::string>(v);
    if (type == 'b') {
      st.bind_blob(index,
                   std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    } else {
      st.bind(index, std::string_view(s));
    }
  }
}

std::string join_names(const std::vector<Column>& cols, bool skip_first) {
  std::string s;
  for (size_t i = skip_first ? 1 : 0; i < cols.size(); ++i) {
    s += (s.empty() ? "" : ", ") + cols[i].name;
  }
  return s;
}

// One table copied from inputs to the output; `fix` rewrites a row (ids, redaction) in place.
// With `new_rowid` the first column (an INTEGER PRIMARY KEY) is left to the output.
class TableCopy {
public:
  TableCopy(store::Db& out, const std::string& table, bool new_rowid)
      : m_table(table),
        m_cols(columns_of(out, table)),
        m_new_rowid(new_rowid) {
    std::string params;
    for (size_t i = new_rowid ? 1 : 0, n = 1; i < m_cols.size(); ++i, ++n) {
      params += (params.empty() ? "?" : ",?") + std::to_string(n);
    }
    m_insert = std::make_unique<store::Stmt>(out.prepare(
        "INSERT INTO " + table + " (" + join_names(m_cols, new_rowid) + ") VALUES (" + params + ")",
        true));
  }

  // The select list for input `in` (validated), which may be of an older schema version: a
  // column its version does not have (added by a later migration) is read as NULL.
  const std::string& select_list(store::Db& in) {
    auto [it, fresh] = m_input_lists.try_emplace(&in);
    if (fresh) {
      const auto version = static_cast<int>(in.query_int("PRAGMA user_version"));
      std::set<std::string> have;
      for (std::string& c : store::reference_columns(version, m_table)) {
        have.insert(std::move(c));
      }
      for (const Column& c : m_cols) {
        it->second += (it->second.empty() ? "" : ", ") + (have.contains(c.name) ? c.name : "NULL");
      }
    }
    return it->second;
  }

  size_t index(const std::string& name) const {
    for (size_t i = 0; i < m_cols.size(); ++i) {
      if (m_cols[i].name == name) {
        return i;
      }
    }
    throw std::logic_error("pack: no column " + name);
  }

  // Reads the row at `st` (columns in select_list(in) order), lets `fix` change it, inserts it.
  template <typename Fix> void copy_row(const store::Stmt& st, const Fix& fix) {
    std::vector<Value> row(m_cols.size());
    for (size_t i = 0; i < m_cols.size(); ++i) {
      row[i] = read_value(st, static_cast<int>(i), m_cols[i].type);
    }
    fix(row);
    for (size_t i = m_new_rowid ? 1 : 0, n = 1; i < m_cols.size(); ++i, ++n) {
      bind_value(*m_insert, static_cast<int>(n), row[i], m_cols[i].type);
    }
    m_insert->run();
  }

private:
  std::string m_table;
  std::vector<Column> m_cols;
  bool m_new_rowid;
  std::map<const store::Db*, std::string> m_input_lists;
  std::unique_ptr<store::Stmt> m_insert;
};

int64_t as_int(const Value& v) {
  const auto* i = std::get_if<int64_t>(&v);
  return i != nullptr ? *i : 0;
}

bool is_null(const Value& v) {
  return std::holds_alternative<std::monostate>(v);
}

std::string addr_text(int64_t family, const std::string& blob) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int af = family == 2 ? AF_INET : AF_INET6;
  if ((af == AF_INET && blob.size() != 4) || (af == AF_INET6 && blob.size() != 16)
      || inet_ntop(af, blob.data(), buf, sizeof buf) == nullptr) {
    return "?";
  }
  return buf;
}

// The select list of `cols` from `table` of a validated input of schema `version`: a column
// that version does not have (added by a later migration) is read as NULL.
std::string
select_list(int version, const std::string& table, std::span<const std::string_view> cols) {
  std::set<std::string, std::less<>> have;
  for (std::string& c : store::reference_columns(version, table)) {
    have.insert(std::move(c));
  }
  std::string list;
  for (const std::string_view c : cols) {
    list += (list.empty() ? "" : ", ") + (have.contains(c) ? std::string(c) : "NULL");
  }
  return list;
}

size_t column(std::span<const std::string_view> cols, std::string_view name) {
  const auto it = std::find(cols.begin(), cols.end(), name);
  if (it == cols.end()) {
    throw std::logic_error("pack: no column " + std::string(name));
  }
  return static_cast<size_t>(it - cols.begin());
}

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
  {
    store::Db out = store::Db::create(temp);
    out.exec("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF");
    store::migrate(out);
    out.exec("BEGIN");

    TableCopy snapshots(out, "snapshots", false);
    TableCopy snapshot_netns(out, "snapshot_netns", false);
    TableCopy sources(out, "sources", false);
    TableCopy issues(out, "capture_issues", false);
    TableCopy extra(out, "extra_owners", false);
    TableCopy tcp_info(out, "tcp_info", false);
    // Sockets, processes, counters and limits become runs (schema v3).
    store::RunWriter runs(out);
    store::Stmt ins_netns = out.prepare("INSERT INTO netns (inode) VALUES (?1)");
    store::Stmt ins_addr = out.prepare("INSERT INTO addrs (family, addr, text) VALUES (?1,?2,?3)");

    std::map<int64_t, int64_t> netns_out;                     // inode -> output netns_id
    std::map<std::pair<int, std::string>, int64_t> addrs_out; // (family, blob) -> addr_id
    std::map<std::string, std::unique_ptr<store::Db>> inputs;
    std::set<std::string> tcp_info_modes;
    int64_t next_sid = 0;

    for (const Chosen& c : chosen) {
      auto& in_ptr = inputs[c.file];
      if (!in_ptr) {
        in_ptr = std::make_unique<store::Db>(open_validated(c.file));
        store::Stmt mode = in_ptr->prepare("SELECT value FROM meta WHERE key = 'tcp_info'");
        if (mode.step()) {
          tcp_info_modes.insert(mode.get_text(0));
        }
        ++result.files;
      }
      store::Db& in = *in_ptr;
      const int64_t old_sid = c.info.snapshot_id;
      const int64_t sid = ++next_sid;
      try {
        // Namespaces and addresses of this file, mapped into the output's numbering.
        std::map<int64_t, int64_t> netns_map;
        {
          store::Stmt st = in.prepare("SELECT netns_id, inode FROM netns");
          while (st.step()) {
            const int64_t inode = st.get_int(1);
            auto it = netns_out.find(inode);
            if (it == netns_out.end()) {
              ins_netns.bind(1, inode).run();
              it = netns_out.emplace(inode, out.last_insert_rowid()).first;
            }
            netns_map[st.get_int(0)] = it->second;
          }
        }
        std::map<int64_t, int64_t> addr_map;
        {
          store::Stmt st = in.prepare("SELECT addr_id, family, addr FROM addrs");
          while (st.step()) {
            const int64_t family = st.get_int(1);
            std::string blob = st.get_blob(2);
            if (opts.redact) {
              blob = red.address(blob);
            }
            auto it = addrs_out.find({static_cast<int>(family), blob});
            if (it == addrs_out.end()) {
              ins_addr.bind(1, family)
                  .bind_blob(2,
                             std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(blob.data()),
                                                      blob.size()))
                  .bind(3, addr_text(family, blob))
                  .run();
              it = addrs_out
                       .emplace(std::make_pair(static_cast<int>(family), blob),
                                out.last_insert_rowid())
                       .first;
            }
            addr_map[st.get_int(0)] = it->second;
          }
        }
        const auto map_netns = [&](Value& v) {
          if (!is_null(v)) {
            const auto it = netns_map.find(as_int(v));
            v = it != netns_map.end() ? Value{it->second} : Value{};
          }
        };
        const auto map_addr = [&](Value& v) {
          if (!is_null(v)) {
            const auto it = addr_map.find(as_int(v));
            v = it != addr_map.end() ? Value{it->second} : Value{};
          }
        };
        const auto redact_text = [&](Value& v, auto fn) {
          if (opts.redact && !is_null(v)) {
            v = fn(std::get<std::string>(v));
          }
        };
        // Every table keyed by snapshot_id.
        const auto copy_snapshot_rows =
            [&](TableCopy& t, const std::string& table, const auto& fix) {
              store::Stmt st = in.prepare("SELECT " + t.select_list(in) + " FROM " + table
                                          + " WHERE snapshot_id = ?1");
              st.bind(1, old_sid);
              const size_t sid_col = t.index("snapshot_id");
              while (st.step()) {
                t.copy_row(st, [&](std::vector<Value>& row) {
                  row[sid_col] = sid;
                  fix(row);
                });
              }
            };

        const size_t host_col = snapshots.index("host");
        copy_snapshot_rows(snapshots, "snapshots", [&](std::vector<Value>& row) {
          redact_text(row[host_col], [&](const std::string& s) { return red.hostname(s); });
        });
        const size_t sn_ns = snapshot_netns.index("netns_id");
        const size_t sn_name = snapshot_netns.index("name");
        copy_snapshot_rows(snapshot_netns, "snapshot_netns", [&](std::vector<Value>& row) {
          map_netns(row[sn_ns]);
          redact_text(row[sn_name], [&](const std::string& s) { return red.name("netns", s); });
        });
        const size_t src_ns = sources.index("netns_id");
        copy_snapshot_rows(
            sources, "sources", [&](std::vector<Value>& row) { map_netns(row[src_ns]); });
        const size_t ci_ns = issues.index("netns_id");
        const size_t ci_example = issues.index("example");
        copy_snapshot_rows(issues, "capture_issues", [&](std::vector<Value>& row) {
          map_netns(row[ci_ns]);
          if (opts.redact) {
            row[ci_example] = std::monostate{}; // examples quote paths, names and addresses
          }
        });
        runs.begin_snapshot(sid,
                            c.info.boottime_ns,
                            c.info.boottime_ns + c.info.duration_ns,
                            c.info.host + '\n' + c.info.boot_id);
        const int version = static_cast<int>(in.query_int("PRAGMA user_version"));
        {
          store::Stmt st = in.prepare("SELECT netns_id, file, name, value FROM counters "
                                      "WHERE snapshot_id = ?1");
          st.bind(1, old_sid);
          while (st.step()) {
            Value ns = st.get_int(0);
            map_netns(ns);
            if (!is_null(ns)) {
              runs.add_counter(as_int(ns), st.get_text(1), st.get_text(2), st.get_int(3));
            }
          }
        }
        {
          store::Stmt st =
              in.prepare("SELECT netns_id, name, value FROM limits WHERE snapshot_id = ?1");
          st.bind(1, old_sid);
          while (st.step()) {
            Value ns = st.get_int(0);
            map_netns(ns);
            if (!is_null(ns)) {
              runs.add_limit(as_int(ns), st.get_text(1), st.get_text(2));
            }
          }
        }
        {
          const auto cols = store::process_columns();
          store::Stmt st = in.prepare("SELECT " + select_list(version, "processes", cols)
                                      + " FROM processes WHERE snapshot_id = ?1");
          st.bind(1, old_sid);
          const size_t p_ns = column(cols, "netns_id");
          const size_t p_cmd = column(cols, "cmdline");
          std::vector<Value> row(cols.size());
          while (st.step()) {
            for (size_t i = 0; i < cols.size(); ++i) {
              row[i] = store::read_value(st, static_cast<int>(i));
            }
            map_netns(row[p_ns]);
            redact_text(row[p_cmd], [&](const std::string& v) { return red.cmdline(v); });
            runs.add_process(row);
          }
        }

        // Sockets get new sock_ids; their extra owners and tcp_info follow them.
        std::map<int64_t, int64_t> sock_map;
        {
          const auto cols = store::socket_columns();
          const size_t s_ns = column(cols, "netns_id");
          const size_t s_la = column(cols, "local_addr_id");
          const size_t s_ra = column(cols, "remote_addr_id");
          const size_t s_path = column(cols, "path");
          store::Stmt st = in.prepare("SELECT sock_id, " + select_list(version, "sockets", cols)
                                      + " FROM sockets WHERE snapshot_id = ?1 ORDER BY sock_id");
          st.bind(1, old_sid);
          std::vector<Value> row(cols.size());
          while (st.step()) {
            for (size_t i = 0; i < cols.size(); ++i) {
              row[i] = store::read_value(st, static_cast<int>(i + 1));
            }
            map_netns(row[s_ns]);
            map_addr(row[s_la]);
            map_addr(row[s_ra]);
            redact_text(row[s_path], [&](const std::string& p) { return red.unix_path(p); });
            sock_map[st.get_int(0)] = runs.add_socket(row);
          }
        }
        result.sockets += sock_map.size();
        const auto copy_by_socket = [&](TableCopy& t, const std::string& table) {
          store::Stmt st = in.prepare("SELECT " + t.select_list(in) + " FROM " + table
                                      + " WHERE sock_id IN (SELECT sock_id FROM sockets WHERE "
                                        "snapshot_id = ?1)");
          st.bind(1, old_sid);
          const size_t col = t.index("sock_id");
          while (st.step()) {
            t.copy_row(st, [&](std::vector<Value>& row) {
              const auto it = sock_map.find(as_int(row[col]));
              row[col] = it != sock_map.end() ? Value{it->second} : Value{};
            });
          }
        };
        copy_by_socket(extra, "extra_owners");
        copy_by_socket(tcp_info, "tcp_info");
      } catch (const store::DbError& e) {
        throw read_error(c.file, e);
      }
      ++result.snapshots;
    }

    runs.finish();
    store::write_meta(out,
                      {"sockrewind-analyze pack",
                       tcp_info_modes.size() == 1 ? *tcp_info_modes.begin() : "mixed",
                       opts.redact});
    out.exec("COMMIT");
    out.exec("VACUUM"); // no free page keeps anything that was not meant to be in the pack
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
