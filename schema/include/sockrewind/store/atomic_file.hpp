#pragma once
// A file written under a private temporary name beside its final path, and given that name only
// once complete and synced: readers never see a partial file, and a failed run leaves nothing.
// The one implementation of "temporary file, fsync, rename" for every file sockrewind writes
// (collector snapshots, pack, report -o).

#include <string>
#include <string_view>

namespace sockrewind::store {

class AtomicFile {
public:
  // Replace::never: an existing final name is never replaced (RENAME_NOREPLACE, or link()
  // where the filesystem has no RENAME_NOREPLACE). Replace::allowed: rename() replaces it.
  enum class Replace { never, allowed };
  // The temporary name is "<dir>/.<name>.tmp-<pid>" beside the final path; TempName::unique
  // appends "-<n>" and tries further numbers while a name is taken.
  enum class TempName { pid, unique };

  // Creates the temporary file with O_EXCL|O_NOFOLLOW|O_CLOEXEC (nothing planted at its name is
  // followed or reused) and `mode` (before the umask). Throws std::system_error
  // "cannot create <temp path>: <reason>" (EISDIR when `final_path` ends in '/').
  AtomicFile(std::string final_path,
             Replace replace,
             unsigned mode = 0600,
             TempName temp_name = TempName::pid);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  AtomicFile(AtomicFile&&) = delete;
  AtomicFile& operator=(AtomicFile&&) = delete;
  // Closes the file and, unless committed, removes the temporary name.
  ~AtomicFile();

  // The open file (-1 once committed), for fsync or writing; others may open temp_path().
  int fd() const { return m_fd; }

  const std::string& temp_path() const { return m_temp; }

  const std::string& final_path() const { return m_final; }

  // Writes all of `data` at the file's offset. Throws std::system_error "cannot write <temp>".
  void write_all(std::string_view data);

  // fsyncs and closes the file, gives it final_path(), fsyncs the directory. Throws
  // std::system_error: "cannot create <final>: File exists" under Replace::never, "cannot sync
  // <temp>", "cannot rename <temp> to <final>".
  void commit();
  // As commit(), to `path` (in the same directory). Under Replace::never, returns false when
  // `path` exists; the file stays uncommitted (synced) and another name may be tried.
  bool commit_as(const std::string& path);

  bool committed() const { return m_committed; }

private:
  std::string m_final;
  std::string m_dir;
  std::string m_temp;
  Replace m_replace;
  int m_fd = -1;
  bool m_committed = false;
};

} // namespace sockrewind::store
