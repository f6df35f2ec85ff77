#include <sockrewind/collect/fold.hpp>
#include <sockrewind/collect/outdir.hpp>
#include <sockrewind/collect/retention.hpp>
#include <sockrewind/store/archive.hpp>
#include <sockrewind/store/atomic_file.hpp>
#include <sockrewind/store/schema.hpp>
#include <sockrewind/store/snapshot_key.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <system_error>
#include <tuple>

namespace sockrewind::collect {

namespace {

constexpr int64_t k_hour = 3600;

double cpu_seconds() {
  rusage ru{};
  (void)::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
         + static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// The host part of a collector name: everything before "-<stamp>[-N|-hour].sqlite".
std::string host_of(const OwnFile& f) {
  std::string stem = f.name.substr(0, f.name.size() - std::string_view(".sqlite").size());
  if (f.archive) {
    stem.resize(stem.size() - std::string_view("-hour").size());
  } else if (f.seq > 1) {
    stem.resize(stem.rfind('-'));
  }
  return stem.substr(0, stem.size() - 17); // "-yyyymmddTHHMMSSZ"
}

// A truncated or damaged minute file can pass validation (its schema pages are intact) and
// fail only when its rows are read, in the middle of writing the archive: that would keep the
// whole hour from folding. quick_check reads every page first, so such a file is set aside.
void check_pages(store::Db& db) {
  store::Stmt st = db.prepare("PRAGMA quick_check(1)");
  if (!st.step() || st.get_text(0) != "ok") {
    throw std::runtime_error("damaged: PRAGMA quick_check failed");
  }
}

struct Input {
  std::string name;
  std::unique_ptr<store::Db> db;
  std::vector<store::SnapshotRef> snaps;
};

// One hour of one host: the earlier archive (if any) and the minute files, into a new archive
// that replaces it; then the minute files go. Throws on any failure (nothing is deleted then).
void fold_hour(const std::string& dir,
               const std::string& archive,
               const std::vector<const OwnFile*>& files,
               FoldResult& result) {
  std::vector<Input> inputs;
  for (const OwnFile* f : files) {
    Input in{f->name, nullptr, {}};
    try {
      in.db = std::make_unique<store::Db>(store::Db::open_readonly(dir + "/" + f->name, false));
      store::validate(*in.db);
      check_pages(*in.db);
      in.snaps = store::snapshot_refs(*in.db);
    } catch (const std::exception& e) {
      struct stat gone {};

      if (!f->archive && ::stat((dir + "/" + f->name).c_str(), &gone) != 0 && errno == ENOENT) {
        continue; // deleted meanwhile by a run's retention: nothing to fold
      }
      if (f->archive) {
        throw std::runtime_error(f->name + ": " + e.what());
      }
      result.warnings.push_back("fold: " + dir + "/" + f->name + " cannot be read (" + e.what()
                                + "); left as it is");
      continue;
    }
    result.bytes_in += f->size;
    inputs.push_back(std::move(in));
  }

  // Every snapshot once (an earlier archive first: a minute file it absorbed is a copy), in
  // time order per host and boot.
  struct Chosen {
    Input* in;
    const store::SnapshotRef* s;
  };

  std::vector<Chosen> chosen;
  std::set<std::tuple<std::string, std::string, int64_t>> seen;
  for (Input& in : inputs) {
    for (const store::SnapshotRef& s : in.snaps) {
      if (seen.emplace(s.host, s.boot_id, s.boottime_ns).second) {
        chosen.push_back({&in, &s});
      }
    }
  }
  std::stable_sort(chosen.begin(), chosen.end(), [](const Chosen& a, const Chosen& b) {
    return std::tie(a.s->host, a.s->realtime_ns) < std::tie(b.s->host, b.s->realtime_ns);
  });
  if (!chosen.empty()) {
    store::AtomicFile out(dir + "/" + archive, store::AtomicFile::Replace::allowed);
    {
      const store::Rewrite keep;
      store::ArchiveWriter w(out.temp_path(), keep);
      // Each input is closed after its last snapshot: memory stays that of one file's pages.
      std::map<const Input*, size_t> left;
      for (const Chosen& c : chosen) {
        ++left[c.in];
      }
      for (const Chosen& c : chosen) {
        w.add(*c.in->db, *c.s);
        if (--left[c.in] == 0) {
          w.done_with(*c.in->db);
          c.in->db.reset();
        }
      }
      // No VACUUM: the file was written once, in one transaction; rewriting it would double
      // the fold's writing for a few free pages.
      w.finish("sockrewind-collect fold", std::nullopt, store::ArchiveWriter::Vacuum::no);
    }
    out.commit();

    struct stat st {};

    if (::stat((dir + "/" + archive).c_str(), &st) == 0) {
      result.bytes_out += static_cast<uint64_t>(st.st_size);
    }
    result.snapshots += chosen.size();
    ++result.archives;
  }
  // The archive is durable (or the files held nothing): the minute files can go.
  for (const Input& in : inputs) {
    if (in.name == archive) {
      continue;
    }
    if (::unlink((dir + "/" + in.name).c_str()) == 0) {
      ++result.absorbed;
    } else if (errno != ENOENT) {
      result.warnings.push_back("fold: cannot delete " + dir + "/" + in.name + ": "
                                + std::system_category().message(errno));
    }
  }
}

} // namespace

std::string hour_archive_name(const std::string& host, int64_t hour_utc_seconds) {
  const auto secs = static_cast<time_t>(hour_utc_seconds);
  tm utc{};
  gmtime_r(&secs, &utc);
  char ts[32];
  (void)strftime(ts, sizeof ts, "%Y%m%dT%H0000Z", &utc);
  return host + "-" + ts + "-hour.sqlite";
}

FoldResult fold_closed_hours(const std::string& dir, int64_t now_utc_seconds) {
  FoldResult result;
  const double cpu0 = cpu_seconds();
  // Holding the fold's lock: every archive temporary file here is a killed fold's.
  result.stale_temp_files = remove_stale_temp_files(dir, TempFiles::archive);
  std::vector<OwnFile> files;
  try {
    files = own_files_in(dir);
  } catch (const std::exception& e) {
    result.warnings.push_back(std::string("fold: ") + e.what() + "; nothing folded");
    return result;
  }
  // (host, hour) -> its archive (if any) first, then its minute files.
  std::map<std::pair<std::string, int64_t>, std::vector<const OwnFile*>> hours;
  for (const OwnFile& f : files) {
    const int64_t hour = f.utc_seconds - (((f.utc_seconds % k_hour) + k_hour) % k_hour);
    if (hour + k_hour > now_utc_seconds) {
      continue; // not closed: minute files of this hour may still come
    }
    auto& list = hours[{host_of(f), hour}];
    if (f.archive) {
      list.insert(list.begin(), &f);
    } else {
      list.push_back(&f);
    }
  }
  for (const auto& [key, list] : hours) {
    const bool has_minutes =
        std::any_of(list.begin(), list.end(), [](const OwnFile* f) { return !f->archive; });
    if (!has_minutes) {
      continue;
    }
    const std::string archive = hour_archive_name(key.first, key.second);
    try {
      fold_hour(dir, archive, list, result);
    } catch (const std::exception& e) {
      std::string w = "fold: ";
      w.append(dir).append("/").append(archive).append(" not written (").append(e.what());
      result.warnings.push_back(w.append("); its minute files stay"));
    }
  }
  result.cpu_seconds = cpu_seconds() - cpu0;
  return result;
}

} // namespace sockrewind::collect
