// The operator's status page (GET /): a self-contained HTML document, no outside assets.
#pragma once

#include <string>

namespace sessiond::api {

/// The page: inline CSS and JS that fetch /v1/status every 2 s and show its figures, each in
/// an element with a stable id (`sync-backlog`, `redis-writes`, … see status_page.cpp), a row
/// per queue (`queue-<name>`), small SVG charts of the last 15 minutes drawn from the node's own
/// history (`chart-requests`, `chart-p99`, `chart-backlog`, `chart-queue-<name>`), and an error
/// banner (`id="error"`) while the fetch fails. Serve it as `text/html; charset=utf-8`.
/// Built once; the reference is valid for the life of the process.
const std::string& status_page_html();

} // namespace sessiond::api
