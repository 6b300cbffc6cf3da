// Files that hold secrets, one per line (auth's tokens files, encryption's keys file): read whole
// and wiped once parsed, their lines walked with '#' comments and blank lines skipped. No CAF.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sessiond::crypto {

/// Space, tab, CR, FF, VT.
bool is_blank(char ch);
/// `s` without blanks at either end.
std::string_view trim_blanks(std::string_view s);

/// The whole file at `path` into `out`; false with `why` (the system's reason, e.g. "No such
/// file or directory", "Is a directory") when it cannot be opened or read.
bool read_secret_file(const std::string& path, std::string& out, std::string& why);
/// Overwrites `s`'s bytes (OPENSSL_cleanse) before it is freed.
void wipe(std::string& s);

/// Calls `f(line_no, line)` for each line of `text` (1-based number; the line trimmed) that is
/// neither blank nor a '#' comment.
template <class F>
void for_each_secret_line(std::string_view text, F&& f) {
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    auto line = trim_blanks(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (!line.empty() && line.front() != '#')
      f(line_no, line);
  }
}

} // namespace sessiond::crypto
