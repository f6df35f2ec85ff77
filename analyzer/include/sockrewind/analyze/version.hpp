#pragma once

namespace sockrewind::analyze {

// The version string of this build.
const char* version();

} // namespace sockrewind::analyze
