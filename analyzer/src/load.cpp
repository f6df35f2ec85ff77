#include <sockrewind/analyze/load.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/schema.hpp>

#include <algorithm>
#include <filesystem>
#include <system_error>

namespace sockrewind::analyze {

namespace fs = std::filesystem;

std::vector<std::string> expand_paths(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const std::string& a : args) {
    std::error_code ec;
    const fs::file_status st = fs::status(a, ec);
    if (ec || !fs::exists(st)) {
      throw LoadError(a + ": no such file or directory");
    }
    if (!fs::is_directory(st)) {
      out.push_back(a);
      continue;
    }
    std::vector<std::string> found;
    for (auto it =
             fs::recursive_directory_iterator(a, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_regular_file(ec) && it->path().extension() == ".sqlite"
          && it->path().filename().string().front() != '.') {
        found.push_back(it->path().string());
      }
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

store::Db open_validated(const std::string& file) {
  try {
    store::Db db = store::Db::open_readonly(file, false);
    store::validate(db);
    return db;
  } catch (const store::SchemaError& e) {
    throw LoadError(file + ": " + e.what());
  } catch (const store::DbError& e) {
    throw LoadError(file + ": " + e.what());
  }
}

std::vector<SnapshotInfo> load_snapshot_index(const std::string& file) {
  store::Db db = open_validated(file);
  std::vector<SnapshotInfo> out;
  try {
    store::Stmt st =
        db.prepare("SELECT snapshot_id, host, boot_id, kernel, realtime_ns, boottime_ns, "
                   "boottime_end_ns - boottime_ns, sockets, issues, sources, netns_mode "
                   "FROM snapshots ORDER BY snapshot_id");
    while (st.step()) {
      SnapshotInfo s;
      s.file = file;
      s.snapshot_id = st.get_int(0);
      s.host = st.get_text(1);
      s.boot_id = st.get_text(2);
      s.kernel = st.get_text(3);
      s.realtime_ns = st.get_int(4);
      s.boottime_ns = st.get_int(5);
      s.duration_ns = st.get_int(6);
      s.sockets = st.get_int(7);
      s.issues = st.get_int(8);
      s.sources = st.get_text(9);
      s.netns_mode = st.get_text(10);
      out.push_back(std::move(s));
    }
  } catch (const store::DbError& e) {
    throw LoadError(file + ": " + e.what());
  }
  return out;
}

std::vector<IssueSum> load_issue_summary(const std::string& file) {
  store::Db db = open_validated(file);
  std::vector<IssueSum> out;
  try {
    store::Stmt st = db.prepare("SELECT source, kind, sum(count), min(example) FROM capture_issues "
                                "GROUP BY source, kind ORDER BY 3 DESC");
    while (st.step()) {
      out.push_back({st.get_text(0), st.get_text(1), st.get_int(2), st.get_text(3)});
    }
  } catch (const store::DbError& e) {
    throw LoadError(file + ": " + e.what());
  }
  return out;
}

} // namespace sockrewind::analyze
