#pragma once
// `sockrewind-analyze info`: files, hosts, snapshot times, intervals and gaps, sources, issues.

#include <ostream>
#include <string>
#include <vector>

namespace sockrewind::analyze {

// Writes the info report for `files` as text. Throws LoadError on a bad file.
void write_info(const std::vector<std::string>& files, std::ostream& out);

} // namespace sockrewind::analyze
