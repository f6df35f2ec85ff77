#include <sockrewind/store/atomic_file.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <system_error>

namespace sockrewind::store {

namespace {

[[noreturn]] void throw_error(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// Gives `from` the name `to`; 0 or an errno value.
int place(const std::string& from, const std::string& to, AtomicFile::Replace replace) {
  if (replace == AtomicFile::Replace::allowed) {
    return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
  }
#ifdef RENAME_NOREPLACE
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
    return 0;
  }
  if (errno != EINVAL && errno != ENOSYS) {
    return errno;
  }
#endif
  // A filesystem without RENAME_NOREPLACE: link() never replaces either.
  if (::link(from.c_str(), to.c_str()) != 0) {
    return errno;
  }
  (void)::unlink(from.c_str());
  return 0;
}

} // namespace

AtomicFile::AtomicFile(std::string final_path, Replace replace, unsigned mode, TempName temp_name)
    : m_final(std::move(final_path)),
      m_dir("."),
      m_replace(replace) {
  std::string base = m_final;
  if (const size_t slash = m_final.rfind('/'); slash != std::string::npos) {
    m_dir = slash == 0 ? "/" : m_final.substr(0, slash);
    base = m_final.substr(slash + 1);
  }
  if (base.empty()) {
    throw_error(EISDIR, "cannot create " + m_final);
  }
  // Built by appending: g++ 12 -O3 warns (-Wrestrict, falsely) on "-" + std::string.
  std::string prefix = m_dir;
  prefix += "/.";
  prefix += base;
  prefix += ".tmp-";
  prefix += std::to_string(::getpid());
  const int flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  if (temp_name == TempName::pid) {
    m_temp = prefix;
    m_fd = ::open(m_temp.c_str(), flags, mode);
  } else {
    for (int n = 1; m_fd < 0 && n <= 64; ++n) {
      m_temp = prefix;
      m_temp += '-';
      m_temp += std::to_string(n);
      m_fd = ::open(m_temp.c_str(), flags, mode);
      if (m_fd < 0 && errno != EEXIST) {
        break;
      }
    }
  }
  if (m_fd < 0) {
    throw_error(errno, "cannot create " + m_temp);
  }
}

AtomicFile::~AtomicFile() {
  if (m_fd >= 0) {
    ::close(m_fd);
  }
  if (!m_committed) {
    (void)::unlink(m_temp.c_str());
  }
}

void AtomicFile::write_all(std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(m_fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      throw_error(n < 0 ? errno : EIO, "cannot write " + m_temp);
    }
    done += static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (!commit_as(m_final)) {
    throw_error(EEXIST, "cannot create " + m_final);
  }
}

bool AtomicFile::commit_as(const std::string& path) {
  if (m_committed) {
    throw_error(EALREADY, "cannot rename " + m_temp + " to " + path);
  }
  if (m_fd >= 0) {
    if (::fsync(m_fd) != 0) {
      throw_error(errno, "cannot sync " + m_temp);
    }
    const int rc = ::close(m_fd);
    m_fd = -1;
    if (rc != 0) {
      throw_error(errno, "cannot sync " + m_temp);
    }
  }
  const int err = place(m_temp, path, m_replace);
  if (err == EEXIST && m_replace == Replace::never) {
    return false;
  }
  if (err != 0) {
    throw_error(err, "cannot rename " + m_temp + " to " + path);
  }
  m_committed = true;
  m_final = path;
  // The new name is durable once the directory is synced; it is already in place, so a
  // failure here is not reported (the file itself was synced above).
  const int dfd = ::open(m_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

} // namespace sockrewind::store
