# Writes OUT: a C++ file defining sockrewind::store::migrations() from INPUTS (NNNN_name.sql).
string(REPLACE "|" ";" INPUTS "${INPUTS}") # '|'-separated (see CMakeLists.txt)
set(_body "")
foreach(_f IN LISTS INPUTS)
  get_filename_component(_name ${_f} NAME_WE)
  string(SUBSTRING ${_name} 0 4 _ver)
  math(EXPR _ver "${_ver} + 0")
  file(READ ${_f} _sql)
  string(APPEND _body "      {${_ver}, \"${_name}\", R\"sockrewind_sql(${_sql})sockrewind_sql\"},\n")
endforeach()
file(WRITE ${OUT}.tmp "// Generated from schema/sql by embed_sql.cmake. Do not edit.
#include <sockrewind/store/schema.hpp>

namespace sockrewind::store {

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> k_all = {
${_body}  };
  return k_all;
}

} // namespace sockrewind::store
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
