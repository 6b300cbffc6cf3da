// Reading and wiping files of secrets (secret_file.hpp).
#include "adapters/crypto/secret_file.hpp"

#include <openssl/crypto.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace sessiond::crypto {

bool is_blank(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v';
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && is_blank(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back()))
    s.remove_suffix(1);
  return s;
}

bool read_secret_file(const std::string& path, std::string& out, std::string& why) {
  out.clear();
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) {
    why = std::strerror(errno);
    return false;
  }
  std::array<char, 4096> buf;
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), file.get())) > 0)
    out.append(buf.data(), n);
  OPENSSL_cleanse(buf.data(), buf.size());
  if (std::ferror(file.get()) != 0) { // a directory opens, and fails here (EISDIR)
    why = std::strerror(errno);
    wipe(out);
    out.clear();
    return false;
  }
  return true;
}

void wipe(std::string& s) {
  OPENSSL_cleanse(s.data(), s.size());
}

} // namespace sessiond::crypto
