// clean_deploy C++ sample: file helpers (see file_io.h).
#include "file_io.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "error.h"

namespace clean_deploy {
namespace sample {

namespace fs = std::filesystem;

std::string read_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw SampleError(what + " not found: " + path);
  if (fs::is_directory(path, ec)) throw SampleError(what + " is a directory, expected a file: " + path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw SampleError("cannot open " + what + " " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw SampleError("error reading " + what + " " + path);
  return ss.str();
}

void make_parent_dirs(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw SampleError("cannot create output folder " + parent.string() + ": " + ec.message());
}

void write_file(const std::string& path, const std::string& data) {
  make_parent_dirs(path);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw SampleError("cannot write " + tmp + ": " + std::strerror(errno));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.close();
    if (!out) throw SampleError("error writing " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw SampleError("cannot rename " + tmp + " to " + path + ": " + ec.message());
}

}  // namespace sample
}  // namespace clean_deploy
