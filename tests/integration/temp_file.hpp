// Test support: a file under /tmp that a test writes and rewrites in place (a config, a tokens or
// keys file, as an operator rotating them would), removed when it goes.
#pragma once

#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace sessiond::test {

/// A file under /tmp holding `text`, removed when the object goes.
struct temp_file {
  std::string path;
  explicit temp_file(const std::string& text, const std::string& suffix = "") {
    std::string name = "/tmp/sessiond-bin-XXXXXX" + suffix;
    int fd = mkstemps(name.data(), static_cast<int>(suffix.size()));
    REQUIRE(fd >= 0);
    close(fd);
    path = name;
    write(text);
  }
  ~temp_file() { std::remove(path.c_str()); }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  void write(const std::string& text) const {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }
  std::string read() const {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

} // namespace sessiond::test
