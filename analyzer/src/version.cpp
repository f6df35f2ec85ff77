#include <sockrewind/analyze/version.hpp>

namespace sockrewind::analyze {

const char* version() {
  return SOCKREWIND_VERSION;
}

} // namespace sockrewind::analyze
