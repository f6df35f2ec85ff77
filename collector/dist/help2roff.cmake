# Makes a man page (roff, section 1) from a binary's --help, at build time:
#   cmake -DBIN=path/to/binary -DNAME=sockrewind-collect -DSUMMARY="one line"
#         [-DSUBCOMMANDS="report;show"] [-DSEE_ALSO="sockrewind-analyze"] -DOUT=file.1
#         -P help2roff.cmake
# The help text is kept as printed (no fill), with roff's special characters escaped; each
# subcommand's --help follows in its own subsection. No dependency beyond CMake itself.
foreach(var BIN NAME SUMMARY OUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "help2roff.cmake: -D${var}= is required")
  endif()
endforeach()

function(run_help out)
  execute_process(COMMAND ${BIN} ${ARGN} --help
    OUTPUT_VARIABLE text ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR text STREQUAL "")
    message(FATAL_ERROR "help2roff.cmake: ${BIN} ${ARGN} --help failed (${rc}): ${err}")
  endif()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

# Escapes text for a no-fill block: backslashes, hyphens (so options copy as ASCII '-'), and
# lines that start with a control character.
function(roff_escape out text)
  string(REPLACE "\\" "\\e" text "${text}")
  string(REPLACE "-" "\\-" text "${text}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" text "${text}")
  # CMake lists: keep ';' literal.
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

string(TOUPPER "${NAME}" upper)
execute_process(COMMAND ${BIN} --version OUTPUT_VARIABLE version
  OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  set(version "${NAME}")
endif()
string(REPLACE "-" "\\-" name_esc "${NAME}")
string(REPLACE "-" "\\-" summary_esc "${SUMMARY}")

run_help(main_help)
roff_escape(main_help "${main_help}")
set(page ".\\\" Generated from `${NAME} --help` by collector/dist/help2roff.cmake; do not edit.\n")
string(APPEND page ".TH ${upper} 1 \"\" \"${version}\" \"User Commands\"\n")
string(APPEND page ".SH NAME\n${name_esc} \\- ${summary_esc}\n")
string(APPEND page ".SH DESCRIPTION\n.nf\n${main_help}.fi\n")
if(SUBCOMMANDS)
  string(APPEND page ".SH COMMANDS\n")
  foreach(sub IN LISTS SUBCOMMANDS)
    run_help(sub_help ${sub})
    roff_escape(sub_help "${sub_help}")
    string(APPEND page ".SS ${sub}\n.nf\n${sub_help}.fi\n")
  endforeach()
endif()
string(APPEND page ".SH SEE ALSO\n")
set(refs "")
foreach(ref IN LISTS SEE_ALSO)
  string(REPLACE "-" "\\-" ref "${ref}")
  list(APPEND refs ".BR ${ref} (1)")
endforeach()
list(JOIN refs ",\n" refs)
if(refs)
  string(APPEND page "${refs},\n")
endif()
string(APPEND page "and README.md of the sockrewind sources.\n")
file(WRITE "${OUT}.tmp" "${page}")
file(RENAME "${OUT}.tmp" "${OUT}")
