// clean_deploy C++ sample: PNG header reader (see png_size.h).
#include "png_size.h"

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace clean_deploy {
namespace sample {

bool read_png_size(const std::string& path, ImageSize& size) {
  unsigned char head[24];
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  const size_t got = std::fread(head, 1, sizeof(head), f);
  std::fclose(f);
  static const unsigned char kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (got < sizeof(head) || std::memcmp(head, kSig, 8) != 0 || std::memcmp(head + 12, "IHDR", 4) != 0) return false;
  auto be32 = [&](int o) {
    return (uint32_t(head[o]) << 24) | (uint32_t(head[o + 1]) << 16) | (uint32_t(head[o + 2]) << 8) | uint32_t(head[o + 3]);
  };
  const uint32_t w = be32(16), h = be32(20);
  if (w == 0 || h == 0 || w > 1u << 20 || h > 1u << 20) return false;
  size = ImageSize{static_cast<int>(w), static_cast<int>(h)};
  return true;
}

}  // namespace sample
}  // namespace clean_deploy
