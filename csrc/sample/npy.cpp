// clean_deploy C++ sample: .npy writer (see npy.h).
#include "npy.h"

#include "file_io.h"

namespace clean_deploy {
namespace sample {

namespace {

void write_npy_raw(const std::string& path, const char* descr, const void* data, size_t elem_size,
                   const std::vector<int64_t>& shape) {
  size_t count = 1;
  std::string dims;
  for (int64_t d : shape) {
    count *= static_cast<size_t>(d);
    dims += std::to_string(d) + ", ";
  }
  if (shape.size() > 1) dims.resize(dims.size() - 2);  // "(3, 4)", but "(3,)" for one axis
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // magic (6) + version (2) + header length (2) + header + '\n', padded to a multiple of 64
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>((header.size() >> 8) & 0xFF);
  out += header;
  if (count > 0) out.append(static_cast<const char*>(data), count * elem_size);
  write_file(path, out);
}

}  // namespace

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  write_npy_raw(path, "<f4", data, sizeof(float), shape);
}

void write_npy(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape) {
  write_npy_raw(path, "<i4", data, sizeof(int32_t), shape);
}

}  // namespace sample
}  // namespace clean_deploy
