// clean_deploy C++ sample: image size from a PNG header (KITTI's image_2/<id>.png), as the Python
// reader (clean_deploy.data.kitti.reader.read_png_shape) takes it.
#pragma once

#include <string>

#include "crop.h"

namespace clean_deploy {
namespace sample {

// True and `size` set when `path` is a readable PNG (signature + IHDR); false otherwise.
bool read_png_size(const std::string& path, ImageSize& size);

}  // namespace sample
}  // namespace clean_deploy
