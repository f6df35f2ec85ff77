#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/text.hpp>

#include <new>

namespace sockrewind::analyze {

ErrorExit error_exit(const std::exception_ptr& error) {
  const std::string error_prefix = "sockrewind-analyze: error: ";
  const std::string internal_prefix = "sockrewind-analyze: internal error: ";
  if (!error) {
    return {k_exit_internal, internal_prefix + "an error without an exception"};
  }
  try {
    std::rethrow_exception(error);
  } catch (const UsageError& e) {
    return {k_exit_usage, error_prefix + escape_text(e.what())};
  } catch (const LoadError& e) {
    return {k_exit_bad_input, error_prefix + escape_text(e.what())};
  } catch (const std::bad_alloc& e) {
    return {k_exit_internal, internal_prefix + "out of memory (" + escape_text(e.what()) + ")"};
  } catch (const std::exception& e) {
    return {k_exit_internal, internal_prefix + escape_text(e.what())};
  } catch (...) {
    return {k_exit_internal, internal_prefix + "an exception that is not a std::exception"};
  }
}

} // namespace sockrewind::analyze
