// The operator's status page (GET /): a self-contained HTML document, no outside assets.
#pragma once

#include <string>

namespace sessiond::api {

/// The page: inline CSS and JS that fetch /v1/status every 2 s and show its figures, each in
/// an element with a stable id (`sync-backlog`, `redis-writes`, … see status_page.cpp), and an
/// error banner (`id="error"`) while the fetch fails. Serve it as `text/html; charset=utf-8`.
/// Built once; the reference is valid for the life of the process.
const std::string& status_page_html();

} // namespace sessiond::api
