// clean_deploy C++ sample: whole-file reads and output-directory creation with clear errors.
#pragma once

#include <string>
#include <vector>

namespace clean_deploy {
namespace sample {

// The whole file as bytes; SampleError naming `what` and the path when it is missing/unreadable.
std::string read_file(const std::string& path, const std::string& what);

// Creates the parent folder of `path` (if any) so that the file can be written.
void make_parent_dirs(const std::string& path);

// Writes `data` to `path` (via a temporary file + rename: readers never see a partial file).
void write_file(const std::string& path, const std::string& data);

}  // namespace sample
}  // namespace clean_deploy
