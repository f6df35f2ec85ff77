#include <sockrewind/collect/outdir.hpp>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>

namespace sockrewind::collect {

namespace {

std::string errno_text(int err) {
  return std::strerror(err); // NOLINT(concurrency-mt-unsafe)
}

void mkdir_p(const std::string& dir) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty()) {
      continue;
    }
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      throw std::runtime_error("cannot create directory " + partial + ": " + errno_text(errno));
    }
  }
}

} // namespace

std::string default_out_dir() {
  if (geteuid() == 0) {
    return "/var/lib/sockrewind";
  }
  const char* state = std::getenv("XDG_STATE_HOME"); // NOLINT(concurrency-mt-unsafe)
  if (state != nullptr && state[0] == '/') {
    return std::string(state) + "/sockrewind";
  }
  const char* home = std::getenv("HOME"); // NOLINT(concurrency-mt-unsafe)
  return std::string(home != nullptr ? home : ".") + "/.local/state/sockrewind";
}

void prepare_out_dir(const std::string& dir, bool strict) {
  if (dir.empty()) {
    throw std::runtime_error("--out is empty");
  }

  struct stat st {};

  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      throw std::runtime_error("cannot use --out " + dir + ": " + errno_text(errno));
    }
    mkdir_p(dir);
    if (::stat(dir.c_str(), &st) != 0) {
      throw std::runtime_error("cannot use --out " + dir + ": " + errno_text(errno));
    }
  }
  if (!S_ISDIR(st.st_mode)) {
    throw std::runtime_error("--out " + dir + " is not a directory");
  }
  if (strict && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw std::runtime_error("refusing --out " + dir
                             + ": group or others can write to it (chmod go-w, or choose "
                               "another directory)");
  }
  if (strict && st.st_uid != 0) {
    throw std::runtime_error("refusing --out " + dir + ": not owned by root");
  }
}

int remove_stale_temp_files(const std::string& dir) {
  struct DirCloser {
    void operator()(DIR* d) const noexcept { closedir(d); }
  };

  const std::unique_ptr<DIR, DirCloser> d(opendir(dir.c_str()));
  if (!d) {
    return 0;
  }
  int removed = 0;
  constexpr std::string_view k_marker = ".sqlite.tmp-";
  while (const dirent* de = readdir(d.get())) { // NOLINT(concurrency-mt-unsafe)
    const std::string_view name = de->d_name;
    const size_t pos = name.rfind(k_marker);
    if (name.empty() || name[0] != '.' || pos == std::string_view::npos) {
      continue;
    }
    const std::string pid_text(name.substr(pos + k_marker.size()));
    char* end = nullptr;
    const long pid = std::strtol(pid_text.c_str(), &end, 10);
    if (end == pid_text.c_str() || *end != '\0' || pid <= 0) {
      continue;
    }
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) {
      continue; // that run is still going
    }
    if (::unlinkat(dirfd(d.get()), de->d_name, 0) == 0) {
      ++removed;
    }
  }
  return removed;
}

} // namespace sockrewind::collect
