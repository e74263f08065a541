// clean_deploy C++ sample: minimal .npy writer (format 1.0, little-endian, C order) for the
// --dump-voxels debug output: numpy.load reads the files directly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace clean_deploy {
namespace sample {

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape);

}  // namespace sample
}  // namespace clean_deploy
